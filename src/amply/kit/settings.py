"""All of Amply's settings, in one pydantic-settings class (see ``.env.example``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, IPvAnyNetwork, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Read from the environment (``AMPLY_*``, the conventional ``DATABASE_URL``) and ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="AMPLY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Literal["development", "test", "production"] = Field(
        default="development",
        description="development relaxes cookie security; production demands an external database.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "AMPLY_DATABASE_URL"),
        description="PostgreSQL URL the service connects with (the amply_app role). "
        "Unset: start the embedded PostgreSQL in data_dir.",
    )
    database_migration_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_MIGRATION_URL", "AMPLY_DATABASE_MIGRATION_URL"),
        description="PostgreSQL URL of the schema owner, used by migrations. "
        "Defaults to database_url.",
    )
    database_read_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_READ_URL", "AMPLY_DATABASE_READ_URL"),
        description="PostgreSQL URL of a read replica (the amply_app role on a streaming "
        "standby of the primary). Public ledger reads and exports use it. Unset: the primary.",
    )
    data_dir: Path = Field(
        default=Path(".amply"),
        description="Where the embedded PostgreSQL keeps its data, and the checkpoint signing "
        "key generated when none is configured.",
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_statement_timeout_ms: int = Field(
        default=30_000, ge=0, description="Per-statement timeout for the service's connections."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="json: one JSON object per line (with the request id), for log "
        "pipelines; text: plain lines for a terminal.",
    )
    metrics_enabled: bool = Field(
        default=True, description="Serve Prometheus metrics at /metrics (else 404)."
    )
    request_body_max_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body accepted, in bytes; a larger one is refused with "
        "413 body_too_large before it is read (Content-Length, or counted as it streams).",
    )
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the reverse proxies whose "
        "X-Forwarded-For names the client, comma separated. Empty: the TCP peer is the "
        "client, whatever the headers say.",
    )

    stripe_secret_key: SecretStr | None = Field(
        default=None,
        description="Stripe secret key of the platform account. Unset: sandbox mode. "
        "An sk_live_ key puts Amply in live mode: API keys are issued as sk_live_.",
    )

    stripe_publishable_key: str | None = Field(
        default=None,
        description="Stripe publishable key (pk_…), returned to checkout clients for Stripe.js.",
    )
    stripe_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signing secret (whsec_…) of the webhook endpoint for platform events.",
    )
    stripe_connect_webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signing secret of the Connect webhook endpoint (events of connected "
        "accounts). May equal stripe_webhook_secret when one endpoint receives both.",
    )
    stripe_webhook_tolerance_seconds: int = Field(
        default=300, ge=1, le=3600, description="Oldest Stripe-Signature timestamp accepted."
    )
    stripe_api_base: str | None = Field(
        default=None,
        description="Base URL of the Stripe API. Unset: Stripe's own. Tests point it at a "
        "Stripe-protocol test server.",
    )
    stripe_timeout_seconds: float = Field(
        default=20.0, gt=0, le=120, description="Timeout of each call to Stripe."
    )
    stripe_js_url: str = Field(
        default="https://js.stripe.com/v3/",
        pattern=r"^https?://[^/?#\s]+/[^?#\s]*$",
        description="Where the give page loads Stripe.js from (Stripe mode). Stripe requires "
        "https://js.stripe.com/v3/ in production; tests point it at a stand-in on their "
        "Stripe-protocol server. The give page's Content-Security-Policy allows its origin.",
    )

    donation_max_amount: int = Field(
        default=99_999_999,
        ge=1,
        le=10**12,
        description="Largest donation in minor units of any currency (Stripe's own cap is "
        "eight digits). The minimum is per currency: see docs/donations.md.",
    )
    checkout_max_per_address: int = Field(
        default=20, ge=1, description="Checkouts per client address per window before 429."
    )
    checkout_max_per_email: int = Field(
        default=10, ge=1, description="Checkouts per donor email per window before 429."
    )
    checkout_window_seconds: int = Field(
        default=3600, ge=1, description="The checkout velocity window."
    )
    idempotency_key_lifetime_seconds: int = Field(
        default=24 * 3600, ge=60, description="How long a response is replayed to its key."
    )

    checkpoint_signing_key: SecretStr | None = Field(
        default=None,
        description="The Ed25519 key that signs checkpoints, as PRIVATE+KEY+<name>+<id>+<key> "
        "(c2sp.org/signed-note; `amply keygen` makes one). Takes precedence over the file.",
    )
    checkpoint_signing_key_file: Path | None = Field(
        default=None,
        description="A file holding the checkpoint signing key. Neither set: outside "
        "production, data_dir/checkpoint-signing.key, generated on first start.",
    )
    verify_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How long the server's verification of a chain (GET …/ledger/verify) is "
        "served again before the chain is re-hashed; each verdict names the head it checked "
        "and when. 0: every request re-hashes the chain.",
    )
    checkpoint_key_name: str = Field(
        default="amply.localhost",
        pattern=r"^[^+\s]+$",
        description="Name of a generated signing key, and the start of every checkpoint's "
        "origin: <name>/ledger/<chain id>. Use the public host name.",
    )
    checkpoint_interval_seconds: int = Field(
        default=60,
        ge=0,
        description="How often the background signer checkpoints public chains that grew "
        "(0: only on demand, when a checkpoint, export or receipt is asked for).",
    )

    wallet_currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="Currency of new wallets (ISO 4217, upper case). Existing wallets keep theirs.",
    )
    demo_mode: bool | None = Field(
        default=None,
        description="Credit every new wallet a welcome bonus from the platform promotions "
        "chain. Unset: on unless live Stripe keys are set; it can never be on with live keys.",
    )
    welcome_bonus_amount: int = Field(
        default=10_000, ge=1, le=10**9, description="The demo welcome bonus, in minor units."
    )
    risk_large_transfer_threshold: int = Field(
        default=50_000,
        ge=1,
        description="A transfer above this amount (minor units) is held for confirmation.",
    )
    risk_rapid_transfer_count: int = Field(
        default=5,
        ge=1,
        description="A transfer is held when the sender already made this many transfers "
        "within the rapid-transfer window.",
    )
    risk_rapid_transfer_window_seconds: int = Field(
        default=3600, ge=1, description="The rapid-transfer window."
    )
    transfer_daily_limit: int = Field(
        default=500_000,
        ge=1,
        description="Hard limit: a transfer that would take the sender's transfers of the last "
        "24 hours (completed or awaiting confirmation) above this is blocked.",
    )
    transfer_hold_seconds: int = Field(
        default=3600,
        ge=1,
        description="How long a transfer awaiting confirmation holds its amount before it expires.",
    )
    money_request_lifetime_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="How long a money request can be paid."
    )
    instant_withdrawal_fee_basis_points: int = Field(
        default=150,
        ge=0,
        le=10_000,
        description="Fee of an instant withdrawal, in basis points of the amount (150 = 1.5%), "
        "rounded half up to the minor unit.",
    )
    housekeeping_interval_seconds: int = Field(
        default=60,
        ge=0,
        description="How often each process expires stale transfer holds and money requests "
        "(0: never in the background; they still stop counting once past their time).",
    )
    reconcile_interval_seconds: int | None = Field(
        default=None,
        ge=0,
        description="How often each process reconciles every organisation's chain with its "
        "Stripe balance transactions, logging differences and exporting "
        "amply_reconciliation_* metrics (0: never; `amply reconcile` still does it on demand). "
        "Unset: hourly with Stripe keys outside tests, never in sandbox mode or in tests.",
    )

    session_lifetime_seconds: int = Field(
        default=7 * 24 * 3600, ge=60, description="Absolute lifetime of a sign-in session."
    )
    session_idle_timeout_seconds: int = Field(
        default=24 * 3600, ge=60, description="A session unused this long expires."
    )
    login_max_failures_per_account: int = Field(
        default=5, ge=1, description="Failed logins per account per window before 429."
    )
    login_max_failures_per_address: int = Field(
        default=20, ge=1, description="Failed logins per client address per window before 429."
    )
    login_failure_window_seconds: int = Field(
        default=900, ge=1, description="The login throttling window."
    )
    password_hash_time_cost: int = Field(default=3, ge=1, description="argon2id iterations.")
    password_hash_memory_kib: int = Field(
        default=65_536, ge=8, description="argon2id memory per hash, in KiB (RFC 9106 profile)."
    )
    password_hash_parallelism: int = Field(default=4, ge=1, description="argon2id lanes.")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def live_mode(self) -> bool:
        """True when live Stripe keys are configured: real money moves."""
        key = self.stripe_secret_key
        return key is not None and key.get_secret_value().startswith(("sk_live_", "rk_live_"))

    @property
    def demo(self) -> bool:
        """Whether new wallets get a welcome bonus (never with live keys)."""
        return (not self.live_mode) if self.demo_mode is None else self.demo_mode

    @model_validator(mode="after")
    def _no_demo_with_live_keys(self) -> Settings:
        if self.demo_mode and self.live_mode:
            raise ValueError("demo_mode cannot be on with live Stripe keys")
        return self

    @property
    def reconcile_interval(self) -> int:
        """``reconcile_interval_seconds``, or its default for this mode (0: off)."""
        if self.reconcile_interval_seconds is not None:
            return self.reconcile_interval_seconds
        return 0 if self.sandbox_mode or self.environment == "test" else 3600

    @property
    def sandbox_mode(self) -> bool:
        """No Stripe keys: payments are local sandbox payments. Never true with live keys."""
        return self.stripe_secret_key is None

    @property
    def secure_cookies(self) -> bool:
        """Cookies are ``Secure`` (and ``__Host-`` prefixed) everywhere but development."""
        return self.environment != "development"

    @property
    def session_cookie_name(self) -> str:
        return "__Host-amply_session" if self.secure_cookies else "amply_session"

    @property
    def embedded(self) -> bool:
        """True when no external database is configured."""
        return self.database_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
