-- Running totals of the public chains (0015_chain_totals): a row's key never changes and its
-- sums only move forward, so two writers never double count and an older one never undoes
-- a newer one.
CREATE OR REPLACE FUNCTION chain_totals_guard() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF (NEW.chain_id, NEW.currency, NEW.type, NEW.month, NEW.fund_id)
       IS DISTINCT FROM (OLD.chain_id, OLD.currency, OLD.type, OLD.month, OLD.fund_id) THEN
        RAISE EXCEPTION 'chain_totals: a row''s key never changes'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'chain_totals_forward';
    END IF;
    IF NEW.through_seq <= OLD.through_seq OR NEW.entries < OLD.entries THEN
        RAISE EXCEPTION 'chain_totals: % moves only forward (through % to %)',
            OLD.chain_id, OLD.through_seq, NEW.through_seq
            USING ERRCODE = 'check_violation', CONSTRAINT = 'chain_totals_forward';
    END IF;
    RETURN NEW;
END
$$;
