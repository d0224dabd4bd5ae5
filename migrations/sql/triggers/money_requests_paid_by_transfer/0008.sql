-- Money requests are paid only by a completed transfer of their amount, checked at commit
-- (money_requests_check_paid()).
CREATE CONSTRAINT TRIGGER money_requests_paid_by_transfer
AFTER UPDATE OF status ON money_requests
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW
WHEN (new.status = 'paid')
EXECUTE FUNCTION money_requests_check_paid();
