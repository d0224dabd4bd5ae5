-- Linear chains, honest hashes, balances: the database, not the caller, assigns seq,
-- prev_entry_hash, balance_after, created_at and entry_hash, holding the chain's lock until
-- the transaction ends. Concurrent appends to one chain queue on that lock and each reads the
-- entries its predecessors committed, so the chain never forks. Multi-chain journals take the
-- locks in chain-id order (the ledger service inserts legs sorted by chain_id, and
-- ledger_lock_chains() sorts too), so they never deadlock. Wallet chains refuse an
-- entry that would take a balance below zero. The caller-supplied fields are checked first:
-- id and journal id shapes, a known type, an upper-case three-letter currency, and metadata
-- that is a JSON object of at most 8 KiB.
CREATE OR REPLACE FUNCTION ledger_entries_assign() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
-- pg_temp last: otherwise a caller's temporary table could shadow the ledger's tables.
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    flow text;
    prev_seq bigint;
    prev_hash text;
    prev_currency text;
    prev_balance bigint;
BEGIN
    IF NEW.seq IS NOT NULL OR NEW.prev_entry_hash IS NOT NULL OR NEW.balance_after IS NOT NULL
       OR NEW.entry_hash IS NOT NULL OR NEW.created_at IS NOT NULL
       OR NEW.internal IS NOT NULL THEN
        RAISE EXCEPTION 'ledger: seq, prev_entry_hash, balance_after, created_at, '
            'entry_hash and internal are assigned by the database'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_assigned_fields';
    END IF;
    -- (Patterns use + and a length limit, never {n} bounds, which PostgreSQL expands into
    -- large automata.)
    IF NEW.id !~ '^led_[0-9A-Za-z]+$' OR octet_length(NEW.id) > 80
       OR NEW.journal_id !~ '^jrn_[0-9A-Za-z]+$' OR octet_length(NEW.journal_id) > 80 THEN
        RAISE EXCEPTION 'ledger: malformed entry id % or journal id %', NEW.id, NEW.journal_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_ids';
    END IF;
    flow := public.ledger_entry_flow(NEW.type);
    IF flow IS NULL THEN
        RAISE EXCEPTION 'ledger: unknown entry type %', NEW.type
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_type';
    END IF;
    NEW.internal := flow = 'internal';
    IF NEW.currency !~ '^[A-Z][A-Z][A-Z]$' THEN
        RAISE EXCEPTION 'ledger: currency % is not an upper-case ISO 4217 code', NEW.currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_currency';
    END IF;
    IF octet_length(NEW.metadata) > 8192 OR json_typeof(NEW.metadata::json) <> 'object' THEN
        RAISE EXCEPTION 'ledger: metadata must be a JSON object of at most 8192 bytes'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_metadata';
    END IF;
    -- Each statement below must see what the chain's previous lock holder committed, which
    -- only READ COMMITTED guarantees; in a snapshot-isolated transaction the append would
    -- fail on ledger_entries_chain_seq_key, so say why up front.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'ledger: append in a READ COMMITTED transaction, not %',
            current_setting('transaction_isolation')
            USING ERRCODE = 'invalid_transaction_state';
    END IF;

    PERFORM pg_advisory_xact_lock(public.ledger_chain_lock_key(NEW.chain_id));
    -- One lookup: the chain must exist, and its last entry (if any) is the predecessor.
    SELECT last.seq, last.entry_hash, last.currency, last.balance_after
      INTO prev_seq, prev_hash, prev_currency, prev_balance
      FROM public.ledger_chains AS chain
      LEFT JOIN LATERAL (
            SELECT seq, entry_hash, currency, balance_after
              FROM public.ledger_entries
             WHERE chain_id = chain.id
             ORDER BY seq DESC
             LIMIT 1
           ) AS last ON true
     WHERE chain.id = NEW.chain_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger: chain % does not exist', NEW.chain_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'ledger_entries_chain_id_fkey';
    END IF;
    IF prev_seq IS NULL THEN
        prev_seq := 0;
        prev_balance := 0;
    ELSIF prev_currency <> NEW.currency THEN
        SELECT balance_after INTO prev_balance
          FROM public.ledger_entries
         WHERE chain_id = NEW.chain_id AND currency = NEW.currency
         ORDER BY seq DESC
         LIMIT 1;
        prev_balance := coalesce(prev_balance, 0);
    END IF;

    NEW.seq := prev_seq + 1;
    NEW.prev_entry_hash := prev_hash;
    NEW.balance_after := prev_balance + NEW.amount;
    -- A chain's kind is bound to its id's prefix (ledger_chains_guard), so 'wal_' is a wallet.
    IF starts_with(NEW.chain_id, 'wal_') AND NEW.balance_after < 0 THEN
        RAISE EXCEPTION 'ledger: insufficient funds on chain % (% % short)',
            NEW.chain_id, -NEW.balance_after, NEW.currency
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'ledger_wallet_balance_non_negative';
    END IF;
    NEW.created_at := clock_timestamp();
    NEW.entry_hash := public.ledger_entry_hash(
        NEW.chain_id, NEW.seq, NEW.id, NEW.type, NEW.amount, NEW.currency,
        NEW.balance_after, NEW.metadata, NEW.journal_id, NEW.created_at,
        NEW.prev_entry_hash);
    RETURN NEW;
END
$$;
