"""Money row guards: every row that moves or records money is guarded by PostgreSQL itself.

Revision ID: 0008_money_row_guards
Revises: 0007_checkpoint_key_custody
Create Date: 2026-12-07

The ledger refuses to be rewritten (0001_ledger_core) and wallet transactions move only along
their arrows (0005_wallets). This migration gives the same to every other row that moves or
records money, against the service's own role (``amply_app``), so that no application bug
and no stolen service credential can do what the services never do:

- donations, refunds, disputes, cards, money requests and API keys: terms immutable once set,
  legal status transitions only, write-once markers;
- every reference from a business row to a ledger entry is UNIQUE and must name an entry of
  the right type, on the right chain, for the right amount and currency;
- no money without its record: at commit, every entry on a chain that belongs to someone (a
  wallet, an organisation, the platform) is named by the business row it records, which says
  where the money came from (a deferred constraint trigger, like journal balance);
- idempotency keys are forgotten only once expired.

Two columns are added so that the remaining donation entries have their record too:
``donations.processing_fee_entry_id`` (Stripe's fee, set once) and
``donations.refunded_entry_id`` (the latest ``donation_refunded`` entry, whose amount is what
``amount_refunded`` grew by). Each rule is headed by what it guards; downgrading drops them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_money_row_guards"
down_revision: str | None = "0007_checkpoint_key_custody"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENTRY_REFERENCES = """
-- Unique entry references: one ledger entry records one thing. A donation's received entry,
-- fee and latest refund, and a dispute's withdrawal and reinstatement, each name an entry no
-- other row names (a refund's reversal already has its UNIQUE, from 0003_donations).
ALTER TABLE donations
    ADD COLUMN processing_fee_entry_id text REFERENCES ledger_entries (id),
    ADD COLUMN refunded_entry_id text REFERENCES ledger_entries (id),
    ADD CONSTRAINT donations_fee_entry_has_fee
        CHECK (processing_fee_entry_id IS NULL OR processing_fee > 0);
CREATE UNIQUE INDEX donations_received_entry_key ON donations (received_entry_id);
CREATE UNIQUE INDEX donations_processing_fee_entry_key ON donations (processing_fee_entry_id);
CREATE UNIQUE INDEX donations_refunded_entry_key ON donations (refunded_entry_id);
CREATE UNIQUE INDEX donation_disputes_withdrawn_entry_key
    ON donation_disputes (withdrawn_entry_id);
CREATE UNIQUE INDEX donation_disputes_reinstated_entry_key
    ON donation_disputes (reinstated_entry_id);

-- Entry references point at the right entry: the entry exists with exactly this type, chain,
-- amount and currency. (Callers are the guards below, which run as their owner.)
CREATE FUNCTION ledger_entry_matches(
    entry_id text, entry_type text, chain text, entry_amount bigint, entry_currency text
) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT EXISTS (SELECT FROM public.ledger_entries
                    WHERE id = entry_id AND type = entry_type AND chain_id = chain
                      AND amount = entry_amount AND currency = entry_currency)
$$;
"""

DONATIONS = """
-- Donations: a donation starts pending and off the ledger. Its references to the ledger are
-- write-once and name the right entries: received (donation_received, +amount), Stripe's fee
-- (payment_processing_fee, -processing_fee in its currency; the fee itself is set once), and
-- each refund (donation_refunded, for exactly what amount_refunded grew by; amount_refunded
-- grows only with such an entry). completed_at is set once. (0003_donations already keeps
-- the terms, the status arrows and received_entry_id once set.)
CREATE FUNCTION donations_guard_money() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending'
           OR num_nonnulls(NEW.received_entry_id, NEW.processing_fee, NEW.processing_fee_entry_id,
                           NEW.refunded_entry_id, NEW.completed_at) > 0
           OR NEW.amount_refunded <> 0 OR NEW.amount_disputed <> 0 THEN
            RAISE EXCEPTION 'donations: % must start pending, with nothing received or refunded',
                NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_start_pending';
        END IF;
        RETURN NEW;
    END IF;
    IF NEW.received_entry_id IS DISTINCT FROM OLD.received_entry_id
       AND NOT public.ledger_entry_matches(NEW.received_entry_id, 'donation_received',
                                           NEW.organisation_id, NEW.amount, NEW.currency) THEN
        RAISE EXCEPTION 'donations: % must be received by a donation_received entry of % % on %',
            OLD.id, NEW.amount, NEW.currency, NEW.organisation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_entry_matches';
    END IF;
    IF (OLD.processing_fee IS NOT NULL
        AND (NEW.processing_fee, NEW.processing_fee_currency)
            IS DISTINCT FROM (OLD.processing_fee, OLD.processing_fee_currency))
       OR (OLD.processing_fee_entry_id IS NOT NULL
           AND NEW.processing_fee_entry_id IS DISTINCT FROM OLD.processing_fee_entry_id)
       OR (OLD.completed_at IS NOT NULL AND NEW.completed_at IS DISTINCT FROM OLD.completed_at)
       OR (OLD.refunded_entry_id IS NOT NULL AND NEW.refunded_entry_id IS NULL) THEN
        RAISE EXCEPTION 'donations: the fee, completion and ledger references of % are set once',
            OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_write_once';
    END IF;
    IF NEW.processing_fee_entry_id IS DISTINCT FROM OLD.processing_fee_entry_id
       AND NOT public.ledger_entry_matches(NEW.processing_fee_entry_id, 'payment_processing_fee',
                                           NEW.organisation_id, -NEW.processing_fee,
                                           NEW.processing_fee_currency) THEN
        RAISE EXCEPTION 'donations: the fee entry of % must debit % % on %', OLD.id,
            NEW.processing_fee, NEW.processing_fee_currency, NEW.organisation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_entry_matches';
    END IF;
    IF (NEW.refunded_entry_id IS DISTINCT FROM OLD.refunded_entry_id
        OR NEW.amount_refunded > OLD.amount_refunded)
       AND NOT (NEW.refunded_entry_id IS DISTINCT FROM OLD.refunded_entry_id
                AND public.ledger_entry_matches(NEW.refunded_entry_id, 'donation_refunded',
                                                NEW.organisation_id,
                                                OLD.amount_refunded - NEW.amount_refunded,
                                                NEW.currency)) THEN
        RAISE EXCEPTION 'donations: % refunds % more only by a donation_refunded entry of -% %',
            OLD.id, NEW.amount_refunded - OLD.amount_refunded,
            NEW.amount_refunded - OLD.amount_refunded, NEW.currency
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donations_entry_matches';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER donations_guard_money BEFORE INSERT OR UPDATE ON donations
    FOR EACH ROW EXECUTE FUNCTION donations_guard_money();
"""

REFUNDS = """
-- Refunds asked for through Amply: what was asked (donation, amount, reason, note, Stripe's
-- refund, who asked, when) never changes. Status follows Stripe's refund: pending and
-- succeeded may trade places (events arrive out of order), failed and canceled are final.
-- 'recorded' (the ledger covers it) is set once, never cleared; the reversal entry is
-- written once and must return exactly the refund's amount to the donation's organisation.
CREATE FUNCTION donation_refunds_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    donation public.donations%ROWTYPE;
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.recorded OR NEW.reversed_entry_id IS NOT NULL THEN
            RAISE EXCEPTION 'donation_refunds: % starts unrecorded and unreversed', NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_refunds_start';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.id, NEW.donation_id, NEW.amount, NEW.reason, NEW.note, NEW.provider_refund_id,
        NEW.requested_by_user_id, NEW.requested_by_api_key_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.donation_id, OLD.amount, OLD.reason, OLD.note, OLD.provider_refund_id,
        OLD.requested_by_user_id, OLD.requested_by_api_key_id, OLD.created_at)
       OR (OLD.recorded AND NOT NEW.recorded)
       OR (OLD.reversed_entry_id IS NOT NULL
           AND NEW.reversed_entry_id IS DISTINCT FROM OLD.reversed_entry_id) THEN
        RAISE EXCEPTION 'donation_refunds: what % asked for, and its ledger markers, never change',
            OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_refunds_immutable';
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND (OLD.status, NEW.status) NOT IN (
        ('pending', 'succeeded'), ('pending', 'failed'), ('pending', 'canceled'),
        ('succeeded', 'pending'), ('succeeded', 'failed'), ('succeeded', 'canceled')
    ) THEN
        RAISE EXCEPTION 'donation_refunds: % cannot go from % to %', OLD.id, OLD.status,
            NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_refunds_status_transition';
    END IF;
    IF NEW.reversed_entry_id IS DISTINCT FROM OLD.reversed_entry_id THEN
        SELECT * INTO donation FROM public.donations WHERE id = NEW.donation_id;
        IF NOT public.ledger_entry_matches(NEW.reversed_entry_id, 'donation_refund_reversed',
                                           donation.organisation_id, NEW.amount,
                                           donation.currency) THEN
            RAISE EXCEPTION 'donation_refunds: the reversal of % must return % % to %', OLD.id,
                NEW.amount, donation.currency, donation.organisation_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_refunds_entry_matches';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER donation_refunds_guard BEFORE INSERT OR UPDATE ON donation_refunds
    FOR EACH ROW EXECUTE FUNCTION donation_refunds_guard();
"""

DISPUTES = """
-- Disputes: what was disputed (donation, amount, currency, reason, when) never changes, and
-- matches the donation (its currency, at most its amount). The funds are withdrawn once and
-- reinstated once: each marker is write-once and names the right entry, -amount withdrawn
-- from or +amount reinstated to the donation's organisation. (The status is Stripe's
-- dispute status, which Stripe may move either way; it moves no money here.)
CREATE FUNCTION donation_disputes_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    donation public.donations%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' AND (
        (NEW.id, NEW.donation_id, NEW.amount, NEW.currency, NEW.reason, NEW.created_at)
        IS DISTINCT FROM
        (OLD.id, OLD.donation_id, OLD.amount, OLD.currency, OLD.reason, OLD.created_at)
        OR (OLD.withdrawn_entry_id IS NOT NULL
            AND NEW.withdrawn_entry_id IS DISTINCT FROM OLD.withdrawn_entry_id)
        OR (OLD.reinstated_entry_id IS NOT NULL
            AND NEW.reinstated_entry_id IS DISTINCT FROM OLD.reinstated_entry_id)) THEN
        RAISE EXCEPTION 'donation_disputes: the terms and ledger markers of % never change',
            OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_disputes_immutable';
    END IF;
    SELECT * INTO donation FROM public.donations WHERE id = NEW.donation_id;
    IF TG_OP = 'INSERT' AND (NEW.currency <> donation.currency
                             OR NEW.amount > donation.amount) THEN
        RAISE EXCEPTION 'donation_disputes: % disputes more than donation % gave', NEW.id,
            NEW.donation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_disputes_terms';
    END IF;
    IF (NEW.withdrawn_entry_id IS NOT NULL
        AND NEW.withdrawn_entry_id IS DISTINCT FROM (CASE TG_OP WHEN 'UPDATE'
                                                     THEN OLD.withdrawn_entry_id END)
        AND NOT public.ledger_entry_matches(NEW.withdrawn_entry_id, 'dispute_funds_withdrawn',
                                            donation.organisation_id, -NEW.amount,
                                            NEW.currency))
       OR (NEW.reinstated_entry_id IS NOT NULL
           AND NEW.reinstated_entry_id IS DISTINCT FROM (CASE TG_OP WHEN 'UPDATE'
                                                         THEN OLD.reinstated_entry_id END)
           AND NOT public.ledger_entry_matches(NEW.reinstated_entry_id,
                                               'dispute_funds_reinstated',
                                               donation.organisation_id, NEW.amount,
                                               NEW.currency)) THEN
        RAISE EXCEPTION 'donation_disputes: % must name entries moving % % on %', NEW.id,
            NEW.amount, NEW.currency, donation.organisation_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'donation_disputes_entry_matches';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER donation_disputes_guard BEFORE INSERT OR UPDATE ON donation_disputes
    FOR EACH ROW EXECUTE FUNCTION donation_disputes_guard();
"""

TRANSACTIONS = """
-- Deposits and withdrawals (kinds of 'transactions', whose terms and arrows 0005_wallets
-- guards) say where the money came from and went: only a sandbox bank deposit is created
-- completed, a card deposit names its PaymentIntent, and a withdrawal settles (paid or
-- failed) only once it names its payout.
CREATE FUNCTION transactions_guard_origin() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.kind = 'deposit' AND TG_OP = 'INSERT' AND NEW.status = 'completed'
        AND (NEW.source, NEW.provider) IS DISTINCT FROM ('bank', 'sandbox'))
       OR (NEW.kind = 'deposit' AND NEW.source = 'card' AND NEW.payment_intent_id IS NULL)
       OR (NEW.kind = 'withdrawal' AND NEW.status <> 'pending' AND NEW.payout_id IS NULL) THEN
        RAISE EXCEPTION 'transactions: % (%) does not name where its money came from or went',
            NEW.id, NEW.kind
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_origin';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER transactions_guard_origin BEFORE INSERT OR UPDATE ON transactions
    FOR EACH ROW EXECUTE FUNCTION transactions_guard_origin();

-- One welcome bonus per wallet, ever.
CREATE UNIQUE INDEX transactions_one_welcome_bonus ON transactions (wallet_id)
    WHERE kind = 'welcome_bonus';
"""

NO_MONEY_WITHOUT_RECORD = """
-- No money without its record: when a transaction commits, every entry it appended on a chain
-- that belongs to someone (the platform's chains, a wallet's, an organisation's) is named by
-- the business row that records it, and that row says where the money came from:
--   donation_received, payment_processing_fee, donation_refunded -> donations (by entry id)
--   donation_refund_reversed -> donation_refunds; dispute_funds_withdrawn/_reinstated ->
--   donation_disputes (by entry id); dispute_fee -> in the same journal, appended by the same
--   transaction, as its dispute's dispute_funds_withdrawn
--   deposit, withdrawal, withdrawal_fee, fee_collected, welcome_bonus, promotion_granted,
--   transfer_out, transfer_in, wallet_donation_sent, wallet_donation_received -> the
--   transaction (wallet table) of the right kind whose journal_id it is, on the chain that
--   plays that leg's part, and the journal moved there exactly what that transaction says
--   (so legs added later to an old journal are refused too)
--   withdrawal_reversed, withdrawal_fee_refunded, fee_refunded -> likewise, by the
--   withdrawal's reversal_journal_id.
-- The entry references are UNIQUE and checked for type, chain, amount and currency by the
-- row guards above, so one record covers one entry. Honest appends cost one index probe per
-- leg, at commit (and the transaction legs one more, on their journal). A chain that belongs
-- to no one (no wallet or organisation has its id) holds no one's money and is exempt; it
-- can never come to belong to anyone with entries on it (wallets_and_organisations_start_
-- empty below). Tests and benchmarks append to such chains.
-- Like ledger_entries_assign() since 0006_faster_appends, it runs with its caller's rights and
-- search_path, which spares a search_path switch per leg: whoever may append may read every
-- table it reads, and every name in it is qualified (0006 says why that is safe).
CREATE FUNCTION ledger_check_entry_recorded() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    recorded boolean;
BEGIN
    -- One branch per record, each its own small statement: PostgreSQL sets up every
    -- statement it runs afresh in each transaction, so only the record's own probe is paid.
    IF NEW.type = 'donation_received' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE received_entry_id = NEW.id);
    ELSIF NEW.type = 'payment_processing_fee' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE processing_fee_entry_id = NEW.id);
    ELSIF NEW.type = 'donation_refunded' THEN
        recorded := EXISTS (SELECT FROM public.donations WHERE refunded_entry_id = NEW.id);
    ELSIF NEW.type = 'donation_refund_reversed' THEN
        recorded := EXISTS (SELECT FROM public.donation_refunds
                             WHERE reversed_entry_id = NEW.id);
    ELSIF NEW.type = 'dispute_funds_withdrawn' THEN
        recorded := EXISTS (SELECT FROM public.donation_disputes
                             WHERE withdrawn_entry_id = NEW.id);
    ELSIF NEW.type = 'dispute_funds_reinstated' THEN
        recorded := EXISTS (SELECT FROM public.donation_disputes
                             WHERE reinstated_entry_id = NEW.id);
    ELSIF NEW.type = 'dispute_fee' THEN
        -- Appended by the same statement (so the same transaction: equal xmin) as the
        -- withdrawal of the dispute's funds, in its journal, on its chain.
        recorded := EXISTS (
            SELECT FROM public.ledger_entries AS withdrawn
              JOIN public.donation_disputes AS dispute
                ON dispute.withdrawn_entry_id = withdrawn.id
             WHERE withdrawn.journal_id = NEW.journal_id AND withdrawn.chain_id = NEW.chain_id
               AND withdrawn.xmin = (SELECT fee.xmin FROM public.ledger_entries AS fee
                                      WHERE fee.id = NEW.id));
    ELSE
        recorded := EXISTS (
            SELECT FROM public.transactions AS t
             WHERE CASE WHEN NEW.type IN ('withdrawal_reversed', 'withdrawal_fee_refunded',
                                          'fee_refunded')
                        THEN t.reversal_journal_id = NEW.journal_id
                        ELSE t.journal_id = NEW.journal_id END
               AND t.currency = NEW.currency
               -- The transaction's kind, and the chain that plays this leg's part.
               AND CASE NEW.type
                    WHEN 'deposit' THEN t.kind = 'deposit' AND NEW.chain_id = t.wallet_id
                    WHEN 'welcome_bonus' THEN
                        t.kind = 'welcome_bonus' AND NEW.chain_id = t.wallet_id
                    WHEN 'promotion_granted' THEN
                        t.kind = 'welcome_bonus' AND NEW.chain_id = 'plat_promotions'
                    WHEN 'transfer_out' THEN t.kind = 'transfer' AND NEW.chain_id = t.wallet_id
                    WHEN 'transfer_in' THEN
                        t.kind = 'transfer' AND NEW.chain_id = t.counterparty_wallet_id
                    WHEN 'wallet_donation_sent' THEN
                        t.kind = 'donation' AND NEW.chain_id = t.wallet_id
                    WHEN 'wallet_donation_received' THEN
                        t.kind = 'donation' AND NEW.chain_id = t.organisation_id
                    WHEN 'withdrawal' THEN t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'withdrawal_fee' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'fee_collected' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = 'plat_fees'
                    WHEN 'withdrawal_reversed' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'withdrawal_fee_refunded' THEN
                        t.kind = 'withdrawal' AND NEW.chain_id = t.wallet_id
                    WHEN 'fee_refunded' THEN t.kind = 'withdrawal' AND NEW.chain_id = 'plat_fees'
                    ELSE false
                   END
               -- What the journal moved on that chain is what the transaction says.
               AND (SELECT sum(e.amount) FROM public.ledger_entries AS e
                     WHERE e.journal_id = NEW.journal_id AND e.chain_id = NEW.chain_id
                       AND e.currency = NEW.currency)
                   = CASE
                    WHEN NEW.type IN ('deposit', 'welcome_bonus', 'transfer_in',
                                      'wallet_donation_received') THEN t.amount
                    WHEN NEW.type = 'promotion_granted' THEN -t.amount
                    WHEN NEW.type = 'fee_collected' THEN t.fee
                    WHEN NEW.type = 'fee_refunded' THEN -t.fee
                    WHEN NEW.type IN ('withdrawal_reversed', 'withdrawal_fee_refunded')
                        THEN t.amount + t.fee
                    ELSE -(t.amount + t.fee)
                   END);
    END IF;
    IF recorded THEN
        RETURN NULL;
    END IF;
    -- Unrecorded: refused unless the chain belongs to no one.
    IF starts_with(NEW.chain_id, 'wal_') THEN
        recorded := NOT EXISTS (SELECT FROM public.wallets WHERE id = NEW.chain_id);
    ELSIF starts_with(NEW.chain_id, 'org_') THEN
        recorded := NOT EXISTS (SELECT FROM public.organisations WHERE id = NEW.chain_id);
    END IF;
    IF NOT recorded THEN
        RAISE EXCEPTION 'ledger: no record names the % entry % (% %) on chain %, journal %',
            NEW.type, NEW.id, NEW.amount, NEW.currency, NEW.chain_id, NEW.journal_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_entries_recorded';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER ledger_entries_recorded
    AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    EXECUTE FUNCTION ledger_check_entry_recorded();
ALTER TABLE ledger_entries ENABLE ALWAYS TRIGGER ledger_entries_recorded;

-- ... and a chain cannot be given to a wallet or an organisation once it holds entries, so
-- that an ownerless chain's unrecorded money can never become someone's.
CREATE FUNCTION ledger_chain_starts_empty() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT FROM public.ledger_entries WHERE chain_id = NEW.id) THEN
        RAISE EXCEPTION '%: chain % already holds entries', TG_TABLE_NAME, NEW.id
            USING ERRCODE = 'check_violation',
                  CONSTRAINT = 'wallets_and_organisations_start_empty';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER wallets_start_empty BEFORE INSERT ON wallets
    FOR EACH ROW EXECUTE FUNCTION ledger_chain_starts_empty();
CREATE TRIGGER organisations_start_empty BEFORE INSERT ON organisations
    FOR EACH ROW EXECUTE FUNCTION ledger_chain_starts_empty();
"""

CARDS = """
-- Cards: which card it is (wallet, provider, payment method, SetupIntent, brand, last4,
-- expiry, creation) never changes; a card is created in use, and once removed stays removed
-- (removed_at is set once), so a removed card can never be charged again.
CREATE FUNCTION cards_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.removed_at IS NOT NULL THEN
            RAISE EXCEPTION 'cards: % cannot be created removed', NEW.id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'cards_immutable';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.id, NEW.wallet_id, NEW.provider, NEW.payment_method_id, NEW.setup_intent_id,
        NEW.brand, NEW.last4, NEW.exp_month, NEW.exp_year, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.wallet_id, OLD.provider, OLD.payment_method_id, OLD.setup_intent_id,
        OLD.brand, OLD.last4, OLD.exp_month, OLD.exp_year, OLD.created_at)
       OR (OLD.removed_at IS NOT NULL AND NEW.removed_at IS DISTINCT FROM OLD.removed_at) THEN
        RAISE EXCEPTION 'cards: % never changes, and stays removed once removed', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'cards_immutable';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER cards_guard BEFORE INSERT OR UPDATE ON cards
    FOR EACH ROW EXECUTE FUNCTION cards_guard();
"""

MONEY_REQUESTS = """
-- Money requests: created pending (0005_wallets keeps the terms and lets a request leave
-- pending once); resolved_at is set once; and a request is 'paid' only when, at commit, a
-- completed transfer of its amount from its payer to its requester names it.
CREATE FUNCTION money_requests_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'INSERT' AND (NEW.status <> 'pending' OR NEW.resolved_at IS NOT NULL))
       OR (TG_OP = 'UPDATE' AND OLD.resolved_at IS NOT NULL
           AND NEW.resolved_at IS DISTINCT FROM OLD.resolved_at) THEN
        RAISE EXCEPTION 'money_requests: % starts pending and is resolved once', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'money_requests_status_transition';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER money_requests_guard BEFORE INSERT OR UPDATE ON money_requests
    FOR EACH ROW EXECUTE FUNCTION money_requests_guard();

CREATE FUNCTION money_requests_check_paid() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM public.transactions
                    WHERE money_request_id = NEW.id AND kind = 'transfer'
                      AND status = 'completed' AND wallet_id = NEW.payer_wallet_id
                      AND counterparty_wallet_id = NEW.requester_wallet_id
                      AND amount = NEW.amount AND currency = NEW.currency) THEN
        RAISE EXCEPTION 'money_requests: % is paid by no completed transfer', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'money_requests_paid_by_transfer';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER money_requests_paid_by_transfer
    AFTER UPDATE OF status ON money_requests
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.status = 'paid')
    EXECUTE FUNCTION money_requests_check_paid();
"""

API_KEYS = """
-- API keys: what a key is (organisation, name, rights, mode, prefix, hash, creator, creation)
-- never changes; a revoked key stays revoked (revoked_at is set once); last use only moves
-- forward.
CREATE FUNCTION api_keys_guard_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.organisation_id, NEW.name, NEW.read_only, NEW.mode, NEW.display_prefix,
        NEW.token_hash, NEW.created_by, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.organisation_id, OLD.name, OLD.read_only, OLD.mode, OLD.display_prefix,
        OLD.token_hash, OLD.created_by, OLD.created_at)
       OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
       OR NEW.last_used_at < OLD.last_used_at
       OR (OLD.last_used_at IS NOT NULL AND NEW.last_used_at IS NULL) THEN
        RAISE EXCEPTION 'api_keys: % never changes, and stays revoked once revoked', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'api_keys_immutable';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER api_keys_guard_update BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_guard_update();
"""

IDEMPOTENCY_KEYS = """
-- Idempotency keys: a stored first response is replayed until its key expires, so it may be
-- deleted only once expired (the service's sweep and its purge of an expired key do just
-- that); deleting a live key would let a retry move money twice.
CREATE FUNCTION idempotency_keys_guard_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.expires_at > now() THEN
        RAISE EXCEPTION 'idempotency_keys: the key % of % has not expired', OLD.key, OLD.scope
            USING ERRCODE = 'insufficient_privilege',
                  CONSTRAINT = 'idempotency_keys_delete_expired';
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER idempotency_keys_guard_delete BEFORE DELETE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION idempotency_keys_guard_delete();
"""

PRIVILEGES = """
-- The new functions run only as triggers.
REVOKE ALL ON FUNCTION ledger_entry_matches(text, text, text, bigint, text),
    donations_guard_money(), donation_refunds_guard(), donation_disputes_guard(),
    transactions_guard_origin(), ledger_check_entry_recorded(), ledger_chain_starts_empty(),
    cards_guard(), money_requests_guard(), money_requests_check_paid(),
    api_keys_guard_update(), idempotency_keys_guard_delete() FROM PUBLIC;
"""

DOWNGRADE = """
DROP TRIGGER idempotency_keys_guard_delete ON idempotency_keys;
DROP TRIGGER api_keys_guard_update ON api_keys;
DROP TRIGGER money_requests_paid_by_transfer ON money_requests;
DROP TRIGGER money_requests_guard ON money_requests;
DROP TRIGGER cards_guard ON cards;
DROP TRIGGER organisations_start_empty ON organisations;
DROP TRIGGER wallets_start_empty ON wallets;
DROP TRIGGER ledger_entries_recorded ON ledger_entries;
DROP TRIGGER transactions_guard_origin ON transactions;
DROP TRIGGER donation_disputes_guard ON donation_disputes;
DROP TRIGGER donation_refunds_guard ON donation_refunds;
DROP TRIGGER donations_guard_money ON donations;
DROP FUNCTION idempotency_keys_guard_delete(), api_keys_guard_update(),
    money_requests_check_paid(), money_requests_guard(), cards_guard(),
    ledger_chain_starts_empty(), ledger_check_entry_recorded(), transactions_guard_origin(),
    donation_disputes_guard(), donation_refunds_guard(), donations_guard_money(),
    ledger_entry_matches(text, text, text, bigint, text);
DROP INDEX transactions_one_welcome_bonus, donation_disputes_reinstated_entry_key,
    donation_disputes_withdrawn_entry_key, donations_refunded_entry_key,
    donations_processing_fee_entry_key, donations_received_entry_key;
ALTER TABLE donations
    DROP COLUMN refunded_entry_id,
    DROP COLUMN processing_fee_entry_id;
"""


def upgrade() -> None:
    for block in (
        ENTRY_REFERENCES,
        DONATIONS,
        REFUNDS,
        DISPUTES,
        TRANSACTIONS,
        NO_MONEY_WITHOUT_RECORD,
        CARDS,
        MONEY_REQUESTS,
        API_KEYS,
        IDEMPOTENCY_KEYS,
        PRIVILEGES,
    ):
        op.execute(block)


def downgrade() -> None:
    op.execute(DOWNGRADE)
