-- Every organisation keeps at least one owner: a new organisation has one when the
-- transaction that created it commits (the deferred trigger
-- organisations_created_with_an_owner).
CREATE OR REPLACE FUNCTION organisations_check_owner() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    PERFORM public.organisation_assert_has_owner(NEW.id);
    RETURN NULL;
END
$$;
