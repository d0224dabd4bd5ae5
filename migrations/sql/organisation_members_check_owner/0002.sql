-- Every organisation keeps at least one owner: at commit, after an owner's membership
-- changed or went (the deferred trigger organisation_members_keep_an_owner), its
-- organisation still has an owner (organisation_assert_has_owner()).
CREATE OR REPLACE FUNCTION organisation_members_check_owner() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM public.organisation_assert_has_owner(OLD.organisation_id);
    RETURN NULL;
END
$$;
