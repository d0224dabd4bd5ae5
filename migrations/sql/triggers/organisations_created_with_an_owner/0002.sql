-- Every organisation keeps at least one owner: checked at commit when it is created
-- (organisations_check_owner(), which asks organisation_assert_has_owner()).
CREATE CONSTRAINT TRIGGER organisations_created_with_an_owner
AFTER INSERT ON organisations
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
EXECUTE FUNCTION organisations_check_owner();
