"""Housekeeping, in the background of each process: transfer holds and money requests past
their time are marked expired.

Nothing depends on it for correctness: an expired hold stops counting against the balance,
and cannot be confirmed, the moment its time passes. It keeps the stored statuses honest for
lists and reports. Concurrent passes (replicas, workers) are harmless: each row's update is
guarded by its status.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

from sqlalchemy.exc import SQLAlchemyError

from amply.kit.db import Database
from amply.wallets import money_requests, transfers

logger = logging.getLogger(__name__)

_DATABASE_AWAY: Final = (OSError, SQLAlchemyError)


@dataclass(frozen=True, slots=True)
class Expired:
    holds: int
    requests: int


async def expire_stale(database: Database) -> Expired:
    """One pass, committed: holds first, so that requests they were paying can expire."""
    async with database.session() as session:
        holds = await transfers.expire_holds(session)
        requests = await money_requests.expire_requests(session)
        await session.commit()
    if holds or requests:
        logger.info("expired %d transfer holds and %d money requests", holds, requests)
    return Expired(holds=holds, requests=requests)


async def run_housekeeping(database: Database, *, interval: float) -> None:
    """A pass every ``interval`` seconds, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await expire_stale(database)
        except _DATABASE_AWAY as error:  # try again next time
            logger.warning("housekeeping pass failed: %s", error)
