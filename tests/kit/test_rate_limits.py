from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from amply.kit import rate_limits
from tests.conftest import SuperuserSql


async def test_hits_count_within_a_window_and_a_new_window_starts_afresh(
    session: AsyncSession, superuser_sql: SuperuserSql
) -> None:
    for expected in (1, 2, 3):
        window = await rate_limits.hit(session, key="k", window_seconds=60)
        assert window.hits == expected
        assert 59 <= window.seconds_left <= 60
    await session.commit()
    assert (await rate_limits.current(session, key="k", window_seconds=60)).exceeds(2)

    superuser_sql("UPDATE rate_limit_counters SET window_started_at = now() - interval '61 s'")

    assert (await rate_limits.current(session, key="k", window_seconds=60)).hits == 0
    assert (await rate_limits.hit(session, key="k", window_seconds=60)).hits == 1


async def test_reset_forgets_a_key(session: AsyncSession) -> None:
    await rate_limits.hit(session, key="a", window_seconds=60)
    await rate_limits.hit(session, key="b", window_seconds=60)

    await rate_limits.reset(session, key="a")

    assert (await rate_limits.current(session, key="a", window_seconds=60)).hits == 0
    assert (await rate_limits.current(session, key="b", window_seconds=60)).hits == 1
