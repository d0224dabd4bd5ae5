-- What a donation is never changes once created, and its status only moves forward
-- (donations_guard_update()).
CREATE TRIGGER donations_guard_update
BEFORE UPDATE ON donations
FOR EACH ROW EXECUTE FUNCTION donations_guard_update();
