"""Settings from ``QBCONNECT_*`` environment variables (and a ``.env`` file)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

INTUIT_AUTH_URL = "https://appcenter.intuit.com/connect/oauth2"
INTUIT_TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
INTUIT_REVOKE_URL = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"
INTUIT_API_BASES = {
    "sandbox": "https://sandbox-quickbooks.api.intuit.com",
    "production": "https://quickbooks.api.intuit.com",
}
CRM_API_BASE = "https://services.leadconnectorhq.com"
CRM_AUTH_URL = "https://marketplace.leadconnectorhq.com/v2/oauth/chooselocation"
# Where the settings page may be framed: the CRM's own origins (custom pages live in an iframe there).
CRM_FRAME_ANCESTORS = "'self' https://app.gohighlevel.com https://*.gohighlevel.com https://*.leadconnectorhq.com"
# ``serve`` and ``worker`` refuse shorter secrets (``demo`` and tests build their own settings).
MIN_SECRET_LENGTH = 32


class MissingSettingError(RuntimeError):
    """A required setting is absent; the message is one line naming it."""


class WeakSettingError(MissingSettingError):
    """A secret setting is set but too weak; the message is one line naming it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QBCONNECT_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./qbconnect.db"
    queue_url: str | None = None
    public_url: str = "http://127.0.0.1:8000"
    secret_key: SecretStr | None = None
    # Older secret keys, comma-separated: tokens encrypted under them still decrypt (``rotate-key``).
    secret_key_previous: SecretStr | None = None
    admin_token: SecretStr | None = None
    frame_ancestors: str = CRM_FRAME_ANCESTORS
    # White-label: what the pages call the product, and its accent colour (QuickBooks' own green stays on
    # the Connect button, as Intuit's brand rules ask).
    product_name: str = Field(default="QB Connect", min_length=1, max_length=60)
    brand_color: str = Field(default="#155eef", pattern=r"^#[0-9a-fA-F]{6}$")

    qbo_client_id: str | None = None
    qbo_client_secret: SecretStr | None = None
    qbo_environment: Literal["sandbox", "production"] = "sandbox"
    qbo_api_base: str | None = None
    qbo_auth_url: str = INTUIT_AUTH_URL
    qbo_token_url: str = INTUIT_TOKEN_URL
    qbo_revoke_url: str = INTUIT_REVOKE_URL
    qbo_webhook_verifier_token: SecretStr | None = None

    crm_api_base: str = CRM_API_BASE
    crm_client_id: str | None = None
    crm_client_secret: SecretStr | None = None
    crm_auth_url: str = CRM_AUTH_URL
    crm_token_url: str | None = None
    crm_webhook_public_key: str | None = None
    crm_webhook_rsa_public_key: str | None = None
    # The Marketplace app's Shared Secret: decrypts the user context a custom page receives (SSO). Unset: off.
    crm_shared_secret: SecretStr | None = None
    # HighLevel deliveries whose signed ``timestamp`` is further than this from now are refused (replays).
    crm_webhook_replay_window_seconds: float = Field(default=300.0, gt=0)
    # HighLevel re-sends the same signed body (same ``timestamp``) after a 429: up to 6 times, 10 minutes
    # plus jitter apart. Past timestamps are accepted this much longer, so those retries still get in.
    crm_webhook_retry_grace_seconds: float = Field(default=4500.0, ge=0)

    # Operational knobs (not part of the fixed contract).
    ratelimit_url: str | None = None
    job_lease_seconds: float = Field(default=300.0, gt=0)
    job_max_attempts: int = Field(default=8, ge=1)
    job_backoff_base: float = Field(default=2.0, gt=0)
    job_backoff_max: float = Field(default=900.0, gt=0)
    sweep_interval_seconds: float = Field(default=15.0, gt=0)
    reconcile_interval_seconds: float = Field(default=300.0, gt=0)
    # A QuickBooks webhook schedules one change query (CDC) for its company this many seconds ahead; every
    # webhook of that company until then is covered by the same call.
    qbo_cdc_debounce_seconds: float = Field(default=30.0, ge=0)
    # The safety change query per company (for webhooks that never came) when no other ran for this long.
    qbo_sweep_interval_seconds: float = Field(default=86400.0, gt=0)
    worker_threads: int = Field(default=4, ge=1)
    # SIGTERM: running jobs get this long to finish; those still running are then handed back (pending again).
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    # ``serve``/``worker`` apply pending migrations on start; false: refuse to start on an unmigrated database.
    migrate_on_start: bool = True
    log_json: bool = True
    inbox_retention_days: int = Field(default=30, ge=1)
    activity_retention_days: int = Field(default=90, ge=1)
    retention_interval_seconds: float = Field(default=3600.0, gt=0)
    login_max_failures: int = Field(default=10, ge=1)
    login_window_seconds: int = Field(default=900, ge=1)
    # Metered QuickBooks reads (GET, query, CDC) the whole app may make per calendar month (UTC). Default:
    # the free Builder tier of Intuit's App Partner Program (500,000 CorePlus calls a month, then blocked).
    # From 80 % on the safety sweeps slow down; at the budget non-essential reads stop; writes never do.
    qbo_read_budget_monthly: int = Field(default=500_000, ge=1)

    @cached_property
    def resolved_queue_url(self) -> str:
        """The queue URL, defaulting to a SQLite file beside the database."""
        if self.queue_url:
            return self.queue_url
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            db_path = Path(url.database)
            return f"sqlite:///{db_path.with_name(db_path.stem + '-queue.db')}"
        return "sqlite:///./qbconnect-queue.db"

    @property
    def resolved_ratelimit_url(self) -> str:
        if self.ratelimit_url:
            return self.ratelimit_url
        if self.resolved_queue_url.startswith("redis://"):
            return self.resolved_queue_url
        return "memory://"

    @property
    def qbo_api_base_url(self) -> str:
        return (self.qbo_api_base or INTUIT_API_BASES[self.qbo_environment]).rstrip("/")

    @property
    def crm_token_endpoint(self) -> str:
        return self.crm_token_url or f"{self.crm_api_base.rstrip('/')}/oauth/token"

    def require(self, *names: str) -> None:
        """Stop with one clear line naming the first missing setting."""
        for name in names:
            value = getattr(self, name)
            if value is None or (isinstance(value, SecretStr) and not value.get_secret_value()):
                raise MissingSettingError(
                    f"missing required setting QBCONNECT_{name.upper()} (set it in the environment or .env)"
                )

    def require_strong(self, *names: str) -> None:
        """Stop with one line naming the first secret that is set but shorter than ``MIN_SECRET_LENGTH``."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and 0 < len(value.get_secret_value()) < MIN_SECRET_LENGTH:
                raise WeakSettingError(
                    f"QBCONNECT_{name.upper()} is too short: use at least {MIN_SECRET_LENGTH} random characters "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )

    @property
    def previous_secret_keys(self) -> tuple[str, ...]:
        """``QBCONNECT_SECRET_KEY_PREVIOUS`` split on commas, newest first as written."""
        if self.secret_key_previous is None:
            return ()
        return tuple(key.strip() for key in self.secret_key_previous.get_secret_value().split(",") if key.strip())

    @property
    def https(self) -> bool:
        return self.public_url.lower().startswith("https://")

    def secret(self, name: str) -> str:
        value = getattr(self, name)
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if value is None:
            raise MissingSettingError(f"missing required setting QBCONNECT_{name.upper()}")
        return str(value)


SERVICE_REQUIRED = ("secret_key", "admin_token")
