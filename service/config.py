"""Service settings (pydantic-settings): environment variables, then defaults.

Every setting can be given as an environment variable of the same name in upper case,
e.g. ``DATABASE_URL`` or ``PROOFWELL_MAX_UPLOAD_MB``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./proofwell.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROOFWELL_", extra="ignore", frozen=True)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "PROOFWELL_DATABASE_URL"),
    )
    # Uploads over this size are refused with 413 (while they stream in).
    max_upload_mb: float = 100.0
    # Any other request body (a job's JSON) over this size is refused with 413.
    max_body_mb: float = 16.0
    # A model whose declared or inferred tensors, initializers or folded constants hold
    # more elements than this is refused with 422 before anything is allocated.
    max_tensor_elements: int = 50_000_000
    # Inputs and outputs of a component (one variable each in the proof).
    max_io_elements: int = 1_000_000
    # Nodes in a model graph.
    max_nodes: int = 100_000
    # Checking an upload (loading the model, folding constants) runs in a child process
    # with these limits, never in the API process.
    inspect_memory_mb: int = 2048
    inspect_timeout_s: float = 30.0
    # A claimed job's lease; a worker renews it well before it runs out.
    lease_s: float = 30.0
    # How often a worker polls its running jobs (cancel) and its queue.
    poll_s: float = 0.25
    # A job whose lease expired this many times is failed instead of claimed again.
    max_attempts: int = 3
    # The local workers of `serve` run at this lower CPU priority (nice), so requests are
    # answered promptly while jobs run on the same cores (0: the API's priority).
    worker_nice: int = Field(default=10, ge=0, le=19)
    # ... and their jobs run only on CPU time nothing else wants (Linux's SCHED_IDLE): a
    # request then never waits for a job's slice (the worker's own bookkeeping, its lease
    # renewals included, keeps the nice above). False: jobs at the workers' nice.
    worker_idle_jobs: bool = True
    # Defaults of a job's resource limits.
    default_timeout_s: float = 60.0
    default_memory_mb: int = 2048
    # auto: open mode when `serve` binds a loopback address, tokens otherwise; open: refused
    # unless bound to loopback; tokens: always require a bearer token (or dashboard login).
    auth: Literal["auto", "open", "tokens"] = "auto"
    # Resolved by `serve` from `auth` and the bound host: requests without a token act for
    # the default project (only when addressed to a loopback host name).
    open_mode: bool = True
    # The dashboard's session cookie is Secure (set false only for plain-HTTP, non-loopback
    # test setups; browsers treat http://127.0.0.1 and localhost as secure).
    cookie_secure: bool = True
    session_hours: float = 8.0
    # A worker counts as alive on /healthz when seen within this many seconds.
    worker_seen_s: float = 60.0
    # Re-check each `holds` certificate with the independent checker before storing it.
    check_certificates: bool = True

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)

    def with_database(self, url: str | None) -> Settings:
        """A copy with another database URL (a ``--db`` flag); None keeps this one."""
        return self if not url else self.model_copy(update={"database_url": url})
