-- Cards never change, and stay removed once removed (cards_guard()).
CREATE TRIGGER cards_guard
BEFORE INSERT OR UPDATE ON cards
FOR EACH ROW EXECUTE FUNCTION cards_guard();
