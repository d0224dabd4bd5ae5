-- Money requests: created pending and resolved once (money_requests_guard()).
CREATE TRIGGER money_requests_guard
BEFORE INSERT OR UPDATE ON money_requests
FOR EACH ROW EXECUTE FUNCTION money_requests_guard();
