from __future__ import annotations

import pytest

from amply.auth.passwords import Hasher, WeakPassword, check_policy

CHEAP = Hasher(time_cost=1, memory_kib=1024, parallelism=1)


async def test_hashes_are_argon2id_and_verify_only_the_right_password() -> None:
    password_hash = await CHEAP.hash("a fine passphrase")

    assert password_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert await CHEAP.verify(password_hash, "a fine passphrase")
    assert not await CHEAP.verify(password_hash, "a fine passphrasE")
    assert not await CHEAP.verify("not a hash", "a fine passphrase")


async def test_a_hash_of_weaker_cost_needs_rehashing() -> None:
    stronger = Hasher(time_cost=2, memory_kib=1024, parallelism=1)
    password_hash = await CHEAP.hash("a fine passphrase")

    assert stronger.needs_rehash(password_hash)
    assert not CHEAP.needs_rehash(password_hash)
    assert await stronger.verify(password_hash, "a fine passphrase")


@pytest.mark.parametrize(
    "password", ["123456789", "1234567890", "Qwertyuiop", "ada_lovelace", "ADA@example.org"]
)
def test_short_common_and_personal_passwords_are_refused(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_policy(password, username="ada_lovelace", email="ada@example.org")


def test_a_long_uncommon_password_passes() -> None:
    check_policy("violet kettle under the stairs", username="ada", email="ada@example.org")
