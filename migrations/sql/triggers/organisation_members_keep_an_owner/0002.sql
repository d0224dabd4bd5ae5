-- Every organisation keeps at least one owner: checked at commit, after every change to its members
-- (organisation_members_check_owner(), which asks organisation_assert_has_owner());
-- organisations_created_with_an_owner checks it when the organisation is created.
CREATE CONSTRAINT TRIGGER organisation_members_keep_an_owner
AFTER UPDATE OR DELETE ON organisation_members
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW WHEN (old.role = 'owner')
EXECUTE FUNCTION organisation_members_check_owner();
