"""Settings from ``MONITOR_*`` environment variables, validated once, with named defaults.

A bad value raises :class:`ConfigError` whose message names the variable and what it accepts.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

ENV_PREFIX: Final = "MONITOR_"
DEFAULT_HOME: Final = Path.home() / ".longcat-monitor"
DEFAULT_QUOTA: Final = 500_000
RAISED_QUOTA: Final = 5_000_000
DEFAULT_QUOTA_TZ: Final = "Asia/Shanghai"
DEFAULT_ALERT_THRESHOLDS: Final = (50, 80, 90, 100)
#: The currency costs are priced in (from that currency's own prices, never converted).
DEFAULT_CURRENCY: Final = "USD"
#: Percentages of the last top-up left in the balance that each raise an alert once.
DEFAULT_BALANCE_THRESHOLDS: Final = (50, 20, 10, 0)
DEFAULT_UPSTREAM_URL: Final = "https://api.longcat.chat"
#: Seconds the gateway waits for the upstream to accept a connection, then to send each read.
DEFAULT_GATEWAY_CONNECT_TIMEOUT_S: Final = 10.0
DEFAULT_GATEWAY_TIMEOUT_S: Final = 600.0
#: How often, at most, the gateway's quota guard re-reads the rollup tables.
DEFAULT_GATEWAY_GUARD_REFRESH_S: Final = 30.0
#: Largest request body the gateway forwards (LongCat's own requests stay far below it).
DEFAULT_GATEWAY_MAX_BODY_BYTES: Final = 32 * 1024 * 1024
#: Seconds a client has to send the whole head of a request, from its first byte (or from
#: connecting): a client trickling headers holds nothing for longer.
DEFAULT_GATEWAY_HEADER_TIMEOUT_S: Final = 10.0
#: Seconds a client may stay silent while the gateway waits on it: for the rest of a request
#: body, or to read more of an answer.
DEFAULT_GATEWAY_IDLE_TIMEOUT_S: Final = 30.0
#: Calls being served at once; beyond it a new call gets a 503 in its API's error shape.
DEFAULT_GATEWAY_MAX_CONCURRENCY: Final = 1000
#: Shortest MONITOR_GATEWAY_TOKEN accepted (a shared gateway's only protection).
GATEWAY_TOKEN_MIN_CHARS: Final = 16
DEFAULT_SMTP_PORT: Final = 25
DEFAULT_QUEUE_SIZE: Final = 10_000
#: Records per write. Postgres writes 2,000-row batches a third faster than 500-row ones (SQLite
#: is flat); the rows built for one take under 1 MB, and it is a fifth of the default queue.
DEFAULT_BATCH_SIZE: Final = 2_000
DEFAULT_FLUSH_INTERVAL_S: Final = 1.0
DEFAULT_EXIT_FLUSH_TIMEOUT_S: Final = 5.0
#: Raw calls are kept forever unless ``MONITOR_RETENTION_DAYS`` is set (rollups always are).
DEFAULT_RETENTION_DAYS: Final = None
#: Postgres day partitions of ``api_calls`` the scheduler keeps ready beyond today.
DEFAULT_PARTITION_DAYS_AHEAD: Final = 7
MAX_PARTITION_DAYS_AHEAD: Final = 366
#: An incident alert still firing (error rate, 401s, latency) is repeated at most this often.
DEFAULT_ALERT_REPEAT_MIN: Final = 60
#: Seconds a chat service or webhook may take to accept one alert.
DEFAULT_CHANNEL_TIMEOUT_S: Final = 10.0
#: Bytes one process may hold in its spool file while the database is unreachable.
DEFAULT_SPOOL_MAX_BYTES: Final = 64 * 1024 * 1024
#: Standard OpenTelemetry variables that, when set, turn OTLP export on (as MONITOR_OTLP_ENDPOINT).
OTEL_ENDPOINT_VARIABLES: Final = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)


def default_database_url() -> str:
    return f"sqlite:///{DEFAULT_HOME / 'monitor.db'}"


class ConfigError(ValueError):
    """A ``MONITOR_*`` setting has a value the monitor cannot use."""


class Settings(BaseSettings):
    """Every setting the monitor reads. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, validate_default=True
    )

    database_url: str = Field(default_factory=default_database_url)
    quota_tz: str = DEFAULT_QUOTA_TZ
    default_quota: int = Field(DEFAULT_QUOTA, gt=0)
    alert_thresholds: Annotated[tuple[int, ...], NoDecode] = DEFAULT_ALERT_THRESHOLDS
    currency: Literal["USD", "CNY"] = DEFAULT_CURRENCY
    balance_thresholds: Annotated[tuple[int, ...], NoDecode] = DEFAULT_BALANCE_THRESHOLDS
    smtp_host: str | None = None
    smtp_port: int = Field(DEFAULT_SMTP_PORT, gt=0, lt=65536)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    alert_from: str = "longcat-monitor@localhost"
    alert_to: Annotated[tuple[str, ...], NoDecode] = ()
    upstream_url: str = DEFAULT_UPSTREAM_URL
    gateway_token: SecretStr | None = None
    gateway_quota_guard: bool = False
    gateway_guard_refresh_s: float = Field(DEFAULT_GATEWAY_GUARD_REFRESH_S, gt=0)
    gateway_connect_timeout_s: float = Field(DEFAULT_GATEWAY_CONNECT_TIMEOUT_S, gt=0)
    gateway_timeout_s: float = Field(DEFAULT_GATEWAY_TIMEOUT_S, gt=0)
    gateway_max_body_bytes: int = Field(DEFAULT_GATEWAY_MAX_BODY_BYTES, gt=0)
    gateway_header_timeout_s: float = Field(DEFAULT_GATEWAY_HEADER_TIMEOUT_S, gt=0)
    gateway_idle_timeout_s: float = Field(DEFAULT_GATEWAY_IDLE_TIMEOUT_S, gt=0)
    gateway_max_concurrency: int = Field(DEFAULT_GATEWAY_MAX_CONCURRENCY, gt=0)
    key_secret: SecretStr | None = None
    dashboard_url: str | None = None
    dashboard_password: SecretStr | None = None
    queue_size: int = Field(DEFAULT_QUEUE_SIZE, gt=0)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, gt=0)
    flush_interval_s: float = Field(DEFAULT_FLUSH_INTERVAL_S, gt=0)
    exit_flush_timeout_s: float = Field(DEFAULT_EXIT_FLUSH_TIMEOUT_S, ge=0)
    retention_days: int | None = Field(DEFAULT_RETENTION_DAYS, gt=0)
    partition_days_ahead: int = Field(
        DEFAULT_PARTITION_DAYS_AHEAD, ge=1, le=MAX_PARTITION_DAYS_AHEAD
    )
    spool_path: Path | None = None
    #: Notification URLs (Apprise, or signed+https:// for the signed webhook); secrets inside.
    alert_urls: SecretStr | None = None
    routes: str = ""
    routes_file: Path | None = None
    webhook_secret: SecretStr | None = None
    alert_repeat_min: int = Field(DEFAULT_ALERT_REPEAT_MIN, gt=0)
    channel_timeout_s: float = Field(DEFAULT_CHANNEL_TIMEOUT_S, gt=0)
    #: The latency rules are off until a threshold is set (milliseconds, p95 over 15 minutes).
    latency_p95_ms: float | None = Field(None, gt=0)
    ttft_p95_ms: float | None = Field(None, gt=0)
    spool_max_bytes: int = Field(DEFAULT_SPOOL_MAX_BYTES, gt=0)
    otlp_endpoint: str | None = None

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError(
                "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DB, "
                f"got a URL starting {value.split(':', 1)[0]!r}"
            )
        if value.startswith("postgres:"):
            value = "postgresql:" + value.removeprefix("postgres:")
        try:
            make_url(value).port  # noqa: B018 - parsing it is the check
        except (ArgumentError, ValueError):
            # the URL may hold a password: it is not repeated here
            raise ValueError(
                "is not a database URL SQLAlchemy can read (is the port a number?)"
            ) from None
        return value

    @field_validator("quota_tz")
    @classmethod
    def _check_tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone; expected an IANA name such as Asia/Shanghai"
            ) from None
        return value

    @field_validator("gateway_token")
    @classmethod
    def _check_gateway_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        token = value.get_secret_value()
        if len(token) < GATEWAY_TOKEN_MIN_CHARS or any(c.isspace() for c in token):
            raise ValueError(
                f"expected at least {GATEWAY_TOKEN_MIN_CHARS} characters with no spaces "
                "(for example the output of `openssl rand -hex 24`)"
            )
        return value

    @field_validator("dashboard_password")
    @classmethod
    def _check_dashboard_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # blank is no password, never an empty one that anyone can type
        return value

    @field_validator("alert_thresholds", mode="before")
    @classmethod
    def _parse_thresholds(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            try:
                numbers = sorted({int(p) for p in parts})
            except ValueError:
                raise ValueError(
                    "expected comma-separated whole percentages such as 50,80,90,100, "
                    f"got {value!r}"
                ) from None
            if not numbers or any(n <= 0 or n > 1000 for n in numbers):
                raise ValueError(f"expected percentages between 1 and 1000, got {value!r}")
            return tuple(numbers)
        return value

    @field_validator("currency", mode="before")
    @classmethod
    def _parse_currency(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("balance_thresholds", mode="before")
    @classmethod
    def _parse_balance_thresholds(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                numbers = sorted({int(p) for p in value.split(",") if p.strip()}, reverse=True)
            except ValueError:
                raise ValueError(
                    f"expected comma-separated whole percentages such as 50,20,10,0, got {value!r}"
                ) from None
            if not numbers or any(n < 0 or n > 100 for n in numbers):
                raise ValueError(f"expected percentages between 0 and 100, got {value!r}")
            return tuple(numbers)
        return value

    @field_validator("alert_to", mode="before")
    @classmethod
    def _parse_addresses(cls, value: Any) -> Any:
        if isinstance(value, str):
            addresses = tuple(a.strip() for a in value.split(",") if a.strip())
            for address in addresses:
                if "@" not in address:
                    raise ValueError(
                        f"expected e-mail addresses separated by commas, got {address!r}"
                    )
            return addresses
        return value

    @field_validator("retention_days", mode="before")
    @classmethod
    def _parse_retention(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "forever"):
            return None  # keep every raw call
        return value

    @field_validator("upstream_url", "dashboard_url", "otlp_endpoint")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value.rstrip("/") if value else value

    @field_validator("routes_file")
    @classmethod
    def _check_routes_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            raise ValueError(f"{str(value)!r} is not a file (expected a TOML file of routes)")
        return value.expanduser() if value is not None else None

    @field_validator("spool_path")
    @classmethod
    def _check_spool_path(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        value = value.expanduser()
        if value.exists() and not value.is_dir():
            raise ValueError(f"{str(value)!r} is a file; expected a directory for spool files")
        return value

    @property
    def spool_dir(self) -> Path:
        """``MONITOR_SPOOL_PATH``, else the default spool directory of the database."""
        return self.spool_path or default_spool_dir(self.database_url, DEFAULT_HOME)

    @property
    def otlp_enabled(self) -> bool:
        """Whether calls are exported over OTLP: ``MONITOR_OTLP_ENDPOINT`` or a standard
        ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable is set, and ``OTEL_SDK_DISABLED`` is not true."""
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return False
        return bool(self.otlp_endpoint) or any(
            os.environ.get(name, "").strip() for name in OTEL_ENDPOINT_VARIABLES
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.quota_tz)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        name = ENV_PREFIX + ".".join(str(part) for part in problem["loc"][:1]).upper()
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; raise :class:`ConfigError` naming any bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only (the gateway and
    the dashboard refuse any other address unless their token or password is set).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_spool_dir(database_url: str, home: Path) -> Path:
    """Where the spool of ``database_url`` lives unless ``MONITOR_SPOOL_PATH`` says otherwise.

    Next to an SQLite file (``monitor.db`` → ``monitor.db.spool/``); for any other database,
    ``<home>/spool/<host-port-db>-<hash>/``, so records are only ever replayed into the
    database that refused them.

    >>> default_spool_dir("sqlite:////data/monitor.db", Path("/home/me/.longcat-monitor"))
    PosixPath('/data/monitor.db.spool')
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database) + ".spool")
    text = f"{url.get_backend_name()}://{url.username}@{url.host}:{url.port}/{url.database}"
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    label = "-".join(str(p) for p in (url.host, url.port, url.database) if p)
    label = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:60]
    return home / "spool" / f"{label or 'db'}-{digest}"
