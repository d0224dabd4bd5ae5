from __future__ import annotations

import pytest

from amply.kit.ids import PREFIXES, derived_id, generate_id, has_prefix, sandbox_id


def test_ids_carry_their_prefix_and_are_unique() -> None:
    ids = {generate_id("led") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(has_prefix(value, "led") and len(value) == 28 for value in ids)


def test_has_prefix_rejects_other_kinds_and_garbage() -> None:
    assert not has_prefix(generate_id("org"), "led")
    for value in ("led_", "led-abc", "LED_abc", "led_abc!", "", "led_" + "a" * 65):
        assert not has_prefix(value, "led")


def test_unknown_prefixes_are_refused() -> None:
    assert "org" in PREFIXES
    with pytest.raises(ValueError, match="unknown id prefix"):
        generate_id("nope")  # type: ignore[arg-type]


def test_id_tokens_use_the_whole_alphabet() -> None:
    characters = {char for _ in range(1000) for char in generate_id("jrn")[4:]}
    assert len(characters) == 62


def test_derived_ids_are_stable_per_seed_and_differ_between_seeds() -> None:
    first = derived_id("don", seed=b"public\0key-1")

    assert derived_id("don", seed=b"public\0key-1") == first
    assert derived_id("don", seed=b"public\0key-2") != first
    assert has_prefix(first, "don")
    assert len(first) == len("don_") + 24


def test_sandbox_ids_say_so() -> None:
    assert sandbox_id("pi").startswith("pi_sandbox_")
    assert sandbox_id("pi") != sandbox_id("pi")
