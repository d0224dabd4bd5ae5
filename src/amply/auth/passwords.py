"""Password policy and argon2id hashing (argon2-cffi).

Hashing is deliberately slow and memory-hard, so it runs in a worker thread: the event loop
keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import cache
from typing import Final

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH: Final = 10
MAX_LENGTH: Final = 128  # bounds the work one request can ask of the hasher


class WeakPassword(ValueError):
    """A password the policy rejects; the message tells the person what to change."""


@cache
def _common_passwords() -> frozenset[str]:
    # zxcvbn ships the 30,000 most common passwords of public breach corpora.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_policy(password: str, *, username: str, email: str) -> None:
    """Raise :class:`WeakPassword` unless ``password`` may be used."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Use at most {MAX_LENGTH} characters.")
    folded = password.casefold()
    if folded in _common_passwords():
        raise WeakPassword("This password is one of the most common ones; choose another.")
    personal = {username.casefold(), email.casefold(), email.split("@", 1)[0].casefold()}
    if folded in personal:
        raise WeakPassword("The password must not be your username or email address.")


@dataclass(frozen=True)
class Hasher:
    """argon2id with the configured cost; verification also accepts hashes of older costs."""

    time_cost: int
    memory_kib: int
    parallelism: int

    @property
    def _hasher(self) -> PasswordHasher:
        return _password_hasher(self.time_cost, self.memory_kib, self.parallelism)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)

    async def burn(self, password: str) -> None:
        """Spend the time of one verification, for an account that does not exist."""
        await self.verify(_dummy_hash(self.time_cost, self.memory_kib, self.parallelism), password)


@cache
def _password_hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
    )


@cache
def _dummy_hash(time_cost: int, memory_kib: int, parallelism: int) -> str:
    return _password_hasher(time_cost, memory_kib, parallelism).hash("not a real password")
