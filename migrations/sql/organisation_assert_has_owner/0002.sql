-- Every organisation keeps at least one owner: checked at commit, after every change to
-- its members and when it is created. The service also locks the organisation row while it
-- changes members, so that two concurrent demotions cannot each see the other's owner;
-- this trigger is the backstop that turns any bug into a failed commit.
CREATE OR REPLACE FUNCTION organisation_assert_has_owner(org text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM public.organisations WHERE id = org)
       AND NOT EXISTS (SELECT FROM public.organisation_members
                       WHERE organisation_id = org AND role = 'owner') THEN
        RAISE EXCEPTION 'organisation % would have no owner', org
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END
$$;
