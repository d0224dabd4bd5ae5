from __future__ import annotations

from amply.auth import tokens


def test_secrets_are_prefixed_random_and_long() -> None:
    first, second = tokens.new_secret("sess_"), tokens.new_secret("sess_")

    assert first.startswith("sess_")
    assert len(first) == len("sess_") + 43
    assert first != second


def test_csrf_tokens_are_bound_to_their_session() -> None:
    session, other = tokens.new_secret("sess_"), tokens.new_secret("sess_")
    token = tokens.csrf_token(session)

    assert tokens.csrf_token_matches(session, token)
    assert not tokens.csrf_token_matches(other, token)
    assert not tokens.csrf_token_matches(session, token[:-1])
    assert session not in token
