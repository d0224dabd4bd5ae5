"""All of Amply's settings, in one pydantic-settings class (see ``.env.example``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    data_dir: Path = Field(
        default=Path(".amply"),
        description="Where the embedded PostgreSQL keeps its data (and, later, signing keys).",
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_statement_timeout_ms: int = Field(
        default=30_000, ge=0, description="Per-statement timeout for the service's connections."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @property
    def embedded(self) -> bool:
        """True when no external database is configured."""
        return self.database_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
