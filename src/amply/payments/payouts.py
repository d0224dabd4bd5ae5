"""Payouts: sending a withdrawal's money from Amply to the user's bank.

The withdrawal service (``wallets/withdrawals.py``) talks to one :class:`PayoutProvider` and
never asks which one it has. It calls :meth:`PayoutProvider.ensure_available` before any money
moves, and :meth:`PayoutProvider.create_payout` only after the withdrawal's ledger journal is
appended, in the same database transaction, with an idempotency key derived from the
withdrawal's id: a retry names the same payout and never pays twice.

Two providers exist:

- :class:`SandboxPayouts` (no Stripe keys): every payout is created ``pending`` with a
  ``po_sandbox_…`` id and waits for the sandbox endpoints
  (``POST /v1/sandbox/withdrawals/{id}/paid`` or ``…/fail``) to say how it ended.
- :class:`UnavailablePayouts` (Stripe keys set): paying a *user* out through Stripe needs that
  user's verified bank account, held by Stripe on a connected account of the user's own
  (Stripe's ``POST /v1/payouts`` pays only an account's own bank accounts). Amply collects
  neither: a withdrawal names its bank by a free-text label. Rather than pretend, this
  provider refuses every withdrawal with 503 ``payouts_unavailable`` before anything moves.
  A real provider implements this protocol once users can attach payout accounts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final, Protocol, TypedDict, Unpack

from amply.kit.errors import ServiceUnavailable
from amply.kit.ids import base62
from amply.kit.settings import Settings
from amply.models.enums import Provider as Provider
from amply.models.enums import WithdrawalSpeed, WithdrawalStatus

# The names this module had for them before models.enums.
Speed = WithdrawalSpeed
PayoutStatus = WithdrawalStatus

SANDBOX_PAYOUT_PREFIX: Final = "po_sandbox_"


@dataclass(frozen=True, slots=True)
class CreatedPayout:
    """The provider's payout: its id and the status it starts in (usually ``pending``).

    A payout that fails at once carries the provider's ``failure_code`` and
    ``failure_message``.
    """

    payout_id: str
    status: WithdrawalStatus  # the withdrawal's, as the payout implies it
    failure_code: str | None = None
    failure_message: str | None = None


class PayoutsUnavailable(ServiceUnavailable):
    """This server cannot pay withdrawals out; raised before any money moves."""

    default_code = "payouts_unavailable"


class PayoutRequest(TypedDict):
    """What :meth:`PayoutProvider.create_payout` is asked (its keyword arguments)."""

    amount: int
    currency: str
    speed: WithdrawalSpeed
    destination: str
    idempotency_key: str


class PayoutProvider(Protocol):
    """Where withdrawals are paid out."""

    provider: Provider

    def ensure_available(self) -> None:
        """Raise :class:`PayoutsUnavailable` if this provider cannot pay out at all. Called
        before the withdrawal touches the ledger."""
        ...

    async def create_payout(self, **payout: Unpack[PayoutRequest]) -> CreatedPayout:
        """Pay ``amount`` minor units of ``currency`` to ``destination`` (the bank's label).

        The same ``idempotency_key`` must always name the same payout: a retry of a call
        whose answer was lost returns that payout rather than paying again.
        """
        ...


def sandbox_payout_id(idempotency_key: str) -> str:
    """The sandbox payout for this key: the same key always names the same payout, as
    Stripe's idempotency keys do."""
    digest = hashlib.sha256(b"amply/sandbox-payout\0" + idempotency_key.encode()).digest()
    return SANDBOX_PAYOUT_PREFIX + base62(int.from_bytes(digest[:18], "big"), length=24)


class SandboxPayouts:
    """Local payouts: created pending, settled through the sandbox endpoints."""

    provider: Provider = Provider.SANDBOX

    def ensure_available(self) -> None:
        return None

    async def create_payout(self, **payout: Unpack[PayoutRequest]) -> CreatedPayout:
        return CreatedPayout(
            payout_id=sandbox_payout_id(payout["idempotency_key"]), status=WithdrawalStatus.PENDING
        )


UNAVAILABLE_MESSAGE: Final = (
    "Withdrawals are not available on this server: paying out to a user's bank through "
    "Stripe needs that user's verified bank account on a Stripe account of their own, which "
    "Amply does not collect. No money has moved."
)


class UnavailablePayouts:
    """Stripe keys are set but no real payout provider exists: refuse, honestly, at once."""

    provider: Provider = Provider.STRIPE

    def ensure_available(self) -> None:
        raise PayoutsUnavailable(UNAVAILABLE_MESSAGE)

    async def create_payout(self, **payout: Unpack[PayoutRequest]) -> CreatedPayout:
        raise PayoutsUnavailable(UNAVAILABLE_MESSAGE)


def payouts_for(settings: Settings) -> PayoutProvider:
    """The sandbox without Stripe keys; with them, a provider that refuses (see above)."""
    if settings.sandbox_mode:
        return SandboxPayouts()
    return UnavailablePayouts()
