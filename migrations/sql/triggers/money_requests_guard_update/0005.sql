-- A request's terms never change, and it leaves 'pending' once, for good
-- (money_requests_guard_update()).
CREATE TRIGGER money_requests_guard_update
BEFORE UPDATE ON money_requests
FOR EACH ROW EXECUTE FUNCTION money_requests_guard_update();
