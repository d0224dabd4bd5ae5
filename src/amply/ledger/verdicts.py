"""The server's verification of a chain (``GET …/ledger/verify``), computed at most once per
chain per ``verify_cache_seconds`` in each worker.

Re-hashing a whole chain is the most expensive thing an anonymous caller can ask for (1.4 s
for 100,000 entries). A verdict names the head it checked and when, so serving it for a few
seconds is honest; past that age the next caller gets a fresh one, and callers who arrive
while it is computed wait for that one computation instead of starting their own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession

from amply.ledger import service as ledger
from amply.verify import VerificationResult

MAX_CHAINS: Final = 10_000


@dataclass(frozen=True)
class Verdict:
    result: VerificationResult
    checked_at: datetime
    checked_monotonic: float


@dataclass
class VerdictCache:
    max_age_seconds: float
    _verdicts: dict[str, Verdict] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    async def verdict(self, session: AsyncSession, *, chain_id: str) -> Verdict:
        """The chain's verdict: a kept one younger than the limit, or a new one."""
        kept = self._fresh(chain_id)
        if kept is not None:
            return kept
        lock = self._locks.setdefault(chain_id, asyncio.Lock())
        async with lock:
            kept = self._fresh(chain_id)  # computed by the caller we waited for
            if kept is not None:
                return kept
            result = await ledger.verify_chain(session, chain_id=chain_id)
            verdict = Verdict(result, datetime.now(UTC), time.monotonic())
            self._keep(chain_id, verdict)
        if not lock.locked():
            self._locks.pop(chain_id, None)
        return verdict

    def _fresh(self, chain_id: str) -> Verdict | None:
        kept = self._verdicts.get(chain_id)
        if kept is None or time.monotonic() - kept.checked_monotonic >= self.max_age_seconds:
            return None
        return kept

    def _keep(self, chain_id: str, verdict: Verdict) -> None:
        self._verdicts.pop(chain_id, None)
        self._verdicts[chain_id] = verdict
        while len(self._verdicts) > MAX_CHAINS:  # the oldest kept first
            self._verdicts.pop(next(iter(self._verdicts)))
