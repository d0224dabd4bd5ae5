-- No money without its record, for disputes: as 0008 checked it. A withdrawal or
-- reinstatement is named by its dispute; a dispute fee is appended by the same statement
-- (equal xmin) as the withdrawal of its dispute's funds, in its journal, on its chain. No
-- record names a refunded dispute fee yet.
CREATE OR REPLACE FUNCTION ledger_entry_recorded_by_dispute(
    entry public.ledger_entries
) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY INVOKER
AS $$
BEGIN
    IF entry.type = 'dispute_funds_withdrawn' THEN
        RETURN EXISTS (SELECT FROM public.donation_disputes
                        WHERE withdrawn_entry_id = entry.id);
    ELSIF entry.type = 'dispute_funds_reinstated' THEN
        RETURN EXISTS (SELECT FROM public.donation_disputes
                        WHERE reinstated_entry_id = entry.id);
    ELSIF entry.type = 'dispute_fee' THEN
        RETURN EXISTS (
            SELECT FROM public.ledger_entries AS withdrawn
              JOIN public.donation_disputes AS dispute
                ON dispute.withdrawn_entry_id = withdrawn.id
             WHERE withdrawn.journal_id = entry.journal_id AND withdrawn.chain_id = entry.chain_id
               AND withdrawn.xmin = (SELECT fee.xmin FROM public.ledger_entries AS fee
                                      WHERE fee.id = entry.id));
    END IF;
    RETURN false;
END
$$;
