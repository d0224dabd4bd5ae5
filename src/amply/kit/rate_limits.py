"""Fixed-window throttling counters kept in PostgreSQL, so every app instance shares them.

A counter counts hits of one key (``login:account:usr_…``) inside a window that opens at its
first hit and lasts ``window_seconds``; the next hit after the window opens a new one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_HIT_SQL = text("""
    INSERT INTO rate_limit_counters AS c (key, window_started_at, hits)
    VALUES (:key, now(), 1)
    ON CONFLICT (key) DO UPDATE SET
        hits = CASE WHEN c.window_started_at > now() - make_interval(secs => :window)
                    THEN c.hits + 1 ELSE 1 END,
        window_started_at = CASE WHEN c.window_started_at > now() - make_interval(secs => :window)
                                 THEN c.window_started_at ELSE now() END
    RETURNING hits,
        extract(epoch FROM window_started_at + make_interval(secs => :window) - now())
""")

_COUNT_SQL = text("""
    SELECT hits, extract(epoch FROM window_started_at + make_interval(secs => :window) - now())
    FROM rate_limit_counters
    WHERE key = :key AND window_started_at > now() - make_interval(secs => :window)
""")

_RESET_SQL = text("DELETE FROM rate_limit_counters WHERE key = :key")


@dataclass(frozen=True)
class Window:
    hits: int
    seconds_left: int

    def exceeds(self, limit: int) -> bool:
        return self.hits > limit


async def hit(session: AsyncSession, *, key: str, window_seconds: int) -> Window:
    """Count one hit of ``key`` and return the window it fell in.

    The upsert locks the counter's row until the transaction ends, so concurrent hits on
    one key are counted one after another: none is lost.
    """
    row = (await session.execute(_HIT_SQL, {"key": key, "window": window_seconds})).one()
    return Window(hits=row[0], seconds_left=math.ceil(row[1]))


async def current(session: AsyncSession, *, key: str, window_seconds: int) -> Window:
    """The hits of ``key`` in its open window (zero when none is open), counting none."""
    row = (await session.execute(_COUNT_SQL, {"key": key, "window": window_seconds})).first()
    if row is None:
        return Window(hits=0, seconds_left=0)
    return Window(hits=row[0], seconds_left=math.ceil(row[1]))


async def reset(session: AsyncSession, *, key: str) -> None:
    await session.execute(_RESET_SQL, {"key": key})
