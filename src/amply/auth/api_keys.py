"""An organisation's API key recognised from its secret (``Authorization: Bearer sk_…``).

Creating, listing and revoking keys is the ``identity`` domain's (``identity/api_keys.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from amply.auth import tokens
from amply.kit.errors import AuthenticationRequired
from amply.models import ApiKey

# A key's last_used_at is written at most once a minute, not on every request.
_TOUCH_INTERVAL = timedelta(seconds=60)


async def authenticate_api_key(session: AsyncSession, *, secret: str, live_mode: bool) -> ApiKey:
    """The active key ``secret`` belongs to, or :class:`AuthenticationRequired`."""
    record = await session.scalar(select(ApiKey).where(ApiKey.token_hash == tokens.digest(secret)))
    if record is None or record.revoked_at is not None:
        raise AuthenticationRequired(
            "The API key is not valid or was revoked.", code="api_key_invalid"
        )
    if (record.mode == "live") != live_mode:
        expected = "live" if live_mode else "test"
        raise AuthenticationRequired(
            f"This is a {record.mode} key; this server accepts {expected} keys.",
            code="api_key_wrong_mode",
        )
    current_time = datetime.now(UTC)
    if record.last_used_at is None or current_time - record.last_used_at >= _TOUCH_INTERVAL:
        record.last_used_at = current_time
    return record
