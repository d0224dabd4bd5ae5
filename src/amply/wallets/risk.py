"""Risk rules for transfers: simple, explainable, every match reported with its reason.

Three rules hold a transfer for the sender's confirmation (the Pocket Pay seed's): a large
amount, a first transfer to this recipient, and rapid transfers. One hard limit blocks it: the
daily sending cap. Thresholds come from settings. Call with the sender's wallet lock held, so
that concurrent transfers of one sender are assessed one after another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit.money import Money
from amply.kit.settings import Settings
from amply.models import Wallet
from amply.models.enums import RiskRule

DAILY_WINDOW: Final = timedelta(hours=24)

_COMPLETED_BEFORE_SQL: Final = text("""
    SELECT EXISTS (
        SELECT FROM transactions
         WHERE wallet_id = :sender AND counterparty_wallet_id = :recipient
           AND kind = 'transfer' AND status = 'completed')
""")
# Transfers a sender made in the window: any that was not blocked (a cancelled or expired
# one was still an attempt).
_RECENT_COUNT_SQL: Final = text("""
    SELECT count(*) FROM transactions
     WHERE wallet_id = :sender AND kind = 'transfer' AND status <> 'blocked'
       AND created_at > clock_timestamp() - make_interval(secs => :seconds)
""")
# What counts against the daily cap: money sent or still held for sending.
_SENT_TODAY_SQL: Final = text("""
    SELECT coalesce(sum(amount), 0) FROM transactions
     WHERE wallet_id = :sender AND kind = 'transfer'
       AND (status = 'completed'
            OR (status = 'pending_confirmation' AND hold_expires_at > clock_timestamp()))
       AND created_at > clock_timestamp() - make_interval(secs => :seconds)
""")


@dataclass(frozen=True, slots=True)
class RiskFlag:
    rule: RiskRule
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"rule": self.rule, "reason": self.reason}


def _money(amount: int, currency: str) -> str:
    return Money(amount, currency).format()


async def assess_transfer(
    session: AsyncSession, *, sender: Wallet, recipient: Wallet, amount: int, settings: Settings
) -> list[RiskFlag]:
    """Every rule the transfer matches (none: it may complete at once)."""
    flags: list[RiskFlag] = []
    threshold = settings.risk_large_transfer_threshold
    if amount > threshold:
        flags.append(
            RiskFlag(
                RiskRule.LARGE_AMOUNT,
                f"{_money(amount, sender.currency)} is above the large-transfer threshold of "
                f"{_money(threshold, sender.currency)}.",
            )
        )
    if not await session.scalar(
        _COMPLETED_BEFORE_SQL, {"sender": sender.id, "recipient": recipient.id}
    ):
        flags.append(
            RiskFlag(RiskRule.NEW_RECIPIENT, "This is your first transfer to this recipient.")
        )
    window = settings.risk_rapid_transfer_window_seconds
    recent = await session.scalar(_RECENT_COUNT_SQL, {"sender": sender.id, "seconds": window})
    if (recent or 0) >= settings.risk_rapid_transfer_count:
        flags.append(
            RiskFlag(
                RiskRule.RAPID_TRANSFERS,
                f"This is your transfer number {recent + 1} within {_duration(window)}; "
                f"more than {settings.risk_rapid_transfer_count} need confirming.",
            )
        )
    return flags


async def hard_limit_reason(
    session: AsyncSession, *, sender: Wallet, amount: int, settings: Settings
) -> str | None:
    """Why the transfer must be blocked, or None."""
    limit = settings.transfer_daily_limit
    sent = await session.scalar(
        _SENT_TODAY_SQL, {"sender": sender.id, "seconds": DAILY_WINDOW.total_seconds()}
    )
    total = int(sent or 0) + amount
    if total <= limit:
        return None
    return (
        f"Daily sending limit: this transfer would take your transfers of the last 24 hours "
        f"to {_money(total, sender.currency)}, above the limit of "
        f"{_money(limit, sender.currency)}."
    )


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "an hour" if hours == 1 else f"{hours} hours"
    if seconds % 60 == 0:
        minutes = seconds // 60
        return "a minute" if minutes == 1 else f"{minutes} minutes"
    return f"{seconds} seconds"
