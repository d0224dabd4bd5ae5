-- The receipt salt never changes (donations_keep_receipt_salt()).
CREATE TRIGGER donations_keep_receipt_salt
BEFORE UPDATE OF receipt_salt ON donations
FOR EACH ROW EXECUTE FUNCTION donations_keep_receipt_salt();
