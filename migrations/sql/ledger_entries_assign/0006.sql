-- Linear chains, honest hashes, balances, formats: the database, not the caller, assigns seq,
-- prev_entry_hash, balance_after, created_at, entry_hash and internal, holding the chain's
-- lock until the transaction ends (0001_ledger_core explains the lock, the lock order across
-- chains, and why appends need READ COMMITTED). Concurrent appends to one chain queue on that
-- lock and each reads the entry its predecessor committed, so the chain never forks. Wallet
-- chains refuse an entry that would take a balance below zero. Caller-supplied fields are
-- checked first: id and journal id shapes, a known type, an upper-case three-letter currency,
-- metadata that is a JSON object of at most 8 KiB, and a non-zero amount.
--
-- The function runs with its caller's rights (SECURITY INVOKER, no SET clause): every role that
-- may insert an entry may also read ledger_chains and ledger_entries, which is all it reads,
-- and a SET clause would make PostgreSQL switch and restore search_path, and rebuild the name
-- lookups that depend on it, on every append. Without it, names still cannot be shadowed:
-- every table and function of the ledger is qualified with its schema, pg_catalog is searched
-- before any schema a caller lists unless listed after it, and the service's role may create
-- objects in no schema (0006_faster_appends checks it), so it has no shadow to offer.
CREATE OR REPLACE FUNCTION ledger_entries_assign() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    flow text := public.ledger_entry_flow(NEW.type);
    last_seq bigint;
    last_hash text;
    last_currency text;
    last_balance bigint;
    created_text text;
BEGIN
    -- Every rule on what the caller supplies, in one expression, whose last term takes the
    -- chain's lock. The branch is skipped only when no term is true, and so only after every
    -- term, the lock included, has been evaluated: a well-formed entry always holds the lock
    -- past this point. (The lock returns void, which is not NULL, for any chain id but NULL.)
    -- When a term is true, the branch tests the rules one by one and raises the first one
    -- broken.
    IF NEW.seq IS NOT NULL OR NEW.prev_entry_hash IS NOT NULL OR NEW.balance_after IS NOT NULL
       OR NEW.entry_hash IS NOT NULL OR NEW.created_at IS NOT NULL OR NEW.internal IS NOT NULL
       -- (Patterns use + and a length limit, never {n} bounds, which PostgreSQL expands into
       -- large automata.)
       OR NEW.id !~ '^led_[0-9A-Za-z]+$' OR NEW.journal_id !~ '^jrn_[0-9A-Za-z]+$'
       OR greatest(octet_length(NEW.id), octet_length(NEW.journal_id)) > 80
       OR flow IS NULL
       OR NEW.currency !~ '^[A-Z][A-Z][A-Z]$'
       OR octet_length(NEW.metadata) > 8192 OR json_typeof(NEW.metadata::json) <> 'object'
       OR NEW.amount = 0
       -- Each statement below must see what the chain's previous lock holder committed,
       -- which only READ COMMITTED guarantees.
       OR current_setting('transaction_isolation') <> 'read committed'
       OR pg_advisory_xact_lock(public.ledger_chain_lock_key(NEW.chain_id)) IS NULL THEN
        IF num_nonnulls(NEW.seq, NEW.prev_entry_hash, NEW.balance_after, NEW.entry_hash,
                        NEW.created_at, NEW.internal) > 0 THEN
            RAISE EXCEPTION 'ledger: seq, prev_entry_hash, balance_after, created_at, '
                'entry_hash and internal are assigned by the database'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_assigned_fields';
        END IF;
        IF NEW.id !~ '^led_[0-9A-Za-z]+$' OR octet_length(NEW.id) > 80
           OR NEW.journal_id !~ '^jrn_[0-9A-Za-z]+$' OR octet_length(NEW.journal_id) > 80 THEN
            RAISE EXCEPTION 'ledger: malformed entry id % or journal id %', NEW.id, NEW.journal_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_ids';
        END IF;
        IF flow IS NULL THEN
            RAISE EXCEPTION 'ledger: unknown entry type %', NEW.type
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_type';
        END IF;
        IF NEW.currency !~ '^[A-Z][A-Z][A-Z]$' THEN
            RAISE EXCEPTION 'ledger: currency % is not an upper-case ISO 4217 code', NEW.currency
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_currency';
        END IF;
        IF octet_length(NEW.metadata) > 8192 OR json_typeof(NEW.metadata::json) <> 'object' THEN
            RAISE EXCEPTION 'ledger: metadata must be a JSON object of at most 8192 bytes'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_metadata';
        END IF;
        IF NEW.amount = 0 THEN
            RAISE EXCEPTION 'ledger: an entry moves a non-zero amount'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_amount_check';
        END IF;
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'ledger: append in a READ COMMITTED transaction, not %',
                current_setting('transaction_isolation')
                USING ERRCODE = 'invalid_transaction_state';
        END IF;
        -- Reached only with a NULL chain id (its lock key is NULL), which the lookup below
        -- refuses as an unknown chain; the lock is taken here all the same.
        PERFORM pg_advisory_xact_lock(public.ledger_chain_lock_key(NEW.chain_id));
    END IF;

    -- The predecessor: the chain's last entry, one probe of ledger_entries_chain_seq_key.
    SELECT seq, entry_hash, currency, balance_after
      INTO last_seq, last_hash, last_currency, last_balance
      FROM public.ledger_entries
     WHERE chain_id = NEW.chain_id
     ORDER BY seq DESC
     LIMIT 1;
    IF NOT FOUND THEN
        -- No entry yet: the chain must exist (this stands in for a foreign key; once a chain
        -- has an entry it existed, and chains are never deleted).
        IF NOT EXISTS (SELECT FROM public.ledger_chains WHERE id = NEW.chain_id) THEN
            RAISE EXCEPTION 'ledger: chain % does not exist', NEW.chain_id
                USING ERRCODE = 'foreign_key_violation',
                      CONSTRAINT = 'ledger_entries_chain_id_fkey';
        END IF;
        last_seq := 0;
        last_balance := 0;
    ELSIF last_currency <> NEW.currency THEN
        SELECT balance_after INTO last_balance
          FROM public.ledger_entries
         WHERE chain_id = NEW.chain_id AND currency = NEW.currency
         ORDER BY seq DESC
         LIMIT 1;
        last_balance := coalesce(last_balance, 0);
    END IF;

    NEW.seq := last_seq + 1;
    NEW.prev_entry_hash := last_hash;
    NEW.balance_after := last_balance + NEW.amount;
    -- A chain's kind is bound to its id's prefix (ledger_chains_guard), so 'wal_' is a wallet.
    IF NEW.balance_after < 0 AND starts_with(NEW.chain_id, 'wal_') THEN
        RAISE EXCEPTION 'ledger: insufficient funds on chain % (% % short)',
            NEW.chain_id, -NEW.balance_after, NEW.currency
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'ledger_wallet_balance_non_negative';
    END IF;
    -- Double entry: marks the legs the deferred ledger_entries_journal_balanced check sums.
    NEW.internal := flow = 'internal';
    NEW.created_at := clock_timestamp();
    created_text := public.ledger_format_timestamp(NEW.created_at);
    NEW.entry_hash := public.ledger_entry_hash_of(
        NEW.chain_id, NEW.seq, NEW.id, NEW.type, NEW.amount, NEW.currency,
        NEW.balance_after, NEW.metadata, NEW.journal_id, created_text,
        NEW.prev_entry_hash);
    RETURN NEW;
END
$$;
