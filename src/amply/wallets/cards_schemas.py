"""Request and response bodies of saved cards. A card is shown by what a person recognises it
by (brand, last four digits, expiry); its number is never sent to or stored by Amply."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, Field

from amply.kit.schemas import RequestModel, as_literal
from amply.models import enums

if TYPE_CHECKING:  # mypy sees the enums, pydantic the Literal of their values
    Provider = enums.Provider
else:
    Provider = as_literal(enums.Provider)
SetupIntentId = Annotated[
    str,
    Field(
        pattern=r"^seti_[0-9A-Za-z_]{1,95}$",
        description="The SetupIntent (`seti_…`) that Stripe.js (or the sandbox) confirmed.",
        examples=["seti_1Pq2Rs3Tu4Vw5Xy6Za7Bc8De"],
    ),
]


class SetupIntentOut(BaseModel):
    object: Literal["setup_intent"] = "setup_intent"
    setup_intent_id: str = Field(examples=["seti_1Pq2Rs3Tu4Vw5Xy6Za7Bc8De"])
    client_secret: str | None = Field(
        description="For Stripe.js: `stripe.confirmCardSetup(client_secret, …)` collects the "
        "card on Stripe's side. Never send card numbers to Amply."
    )
    publishable_key: str | None = Field(
        description="The key to initialise Stripe.js with (null in the sandbox)."
    )
    provider: Provider = Field(
        description="`sandbox` when the server runs without Stripe keys: confirm the "
        "SetupIntent with `POST /v1/sandbox/setup-intents/{id}/succeed` instead."
    )


class CardCreate(RequestModel):
    setup_intent_id: SetupIntentId


class CardOut(BaseModel):
    object: Literal["card"] = "card"
    id: str = Field(examples=["card_4Hj6Kl8Mn0Pq2Rs4Tu6Vw8Xy"])
    brand: str = Field(description="The card network, as Stripe names it.", examples=["visa"])
    last4: str = Field(description="The card number's last four digits.", examples=["4242"])
    exp_month: int = Field(examples=[12])
    exp_year: int = Field(examples=[2034])
    is_default: bool = Field(description="Deposits use the default card unless told otherwise.")
    provider: Provider
    created_at: datetime
    removed_at: datetime | None = Field(description="When the card was removed (null: in use).")


class SandboxSetupIntentSucceed(RequestModel):
    card: Literal["visa", "mastercard", "amex"] = Field(
        default="visa",
        description="Which test card the SetupIntent saves: `visa` (4242, 12/2034), "
        "`mastercard` (4444, 12/2034) or `amex` (0005, 12/2034).",
    )


class SandboxSetupIntentOut(BaseModel):
    object: Literal["setup_intent"] = "setup_intent"
    id: str
    status: Literal["succeeded"] = "succeeded"
    payment_method_id: str = Field(description="The sandbox payment method (`pm_sandbox_…`).")


def card_out(card: object) -> CardOut:
    """A saved card (an ORM ``Card``) as the API shows it."""
    return CardOut.model_validate(card, from_attributes=True)
