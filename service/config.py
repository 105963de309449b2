"""Service settings (pydantic-settings): environment variables, then defaults.

Every setting can be given as an environment variable of the same name in upper case,
e.g. ``DATABASE_URL`` or ``PROOFWELL_MAX_UPLOAD_MB``.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./proofwell.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROOFWELL_", extra="ignore", frozen=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "PROOFWELL_DATABASE_URL"),
    )
    # Uploads over this size are refused with 413.
    max_upload_mb: float = 100.0
    # A claimed job's lease; a worker renews it well before it runs out.
    lease_s: float = 30.0
    # How often a worker polls its running jobs (cancel) and its queue.
    poll_s: float = 0.25
    # A job whose lease expired this many times is failed instead of claimed again.
    max_attempts: int = 3
    # Defaults of a job's resource limits.
    default_timeout_s: float = 60.0
    default_memory_mb: int = 2048
    # Open mode: no bearer tokens (the local default). Tokens are not built yet.
    open_mode: bool = True
    # A worker counts as alive on /healthz when seen within this many seconds.
    worker_seen_s: float = 60.0
    # Re-check each `holds` certificate with the independent checker before storing it.
    check_certificates: bool = True

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def with_database(self, url: str | None) -> Settings:
        """A copy with another database URL (a ``--db`` flag); None keeps this one."""
        return self if not url else self.model_copy(update={"database_url": url})
