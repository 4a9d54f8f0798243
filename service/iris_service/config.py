"""Settings: read once from the environment into a frozen, typed object."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from iris_service.errors import ConfigError

DEFAULT_MODEL = "gpt-5-nano-2025-08-07"
SUPPORTED_LANGUAGES = frozenset(
    {"python", "javascript", "typescript", "javascriptreact", "typescriptreact"}
)
# The proxy in front of us (nginx read timeout, gunicorn timeout) gives up after 120 s; one
# request, retries included, must answer before that with a JSON error of its own.
PROXY_TIMEOUT_S = 120.0
MAX_REQUEST_DEADLINE_S = PROXY_TIMEOUT_S - 5.0
# Anything else is refused: a typo such as "production" must not quietly mean dev (open access).
ENVIRONMENTS = ("dev", "prod")
CACHE_URL_SCHEMES = ("redis", "rediss")
# A store call slower than this is no cache any more: past it the worker serves without it.
MAX_CACHE_TIMEOUT_S = 5.0


def _split_csv(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    env: str = "dev"
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    cache_dir: Path = Path(".iris")
    memory_cache_entries: int = 500
    cache_ttl_days: float = 30.0
    cache_max_bytes: int = 1024**3
    max_body_bytes: int = 2 * 1024**2
    cors_origins: tuple[str, ...] = ()
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    openai_secret_id: str = "iris/openai-api-key"
    aws_region: str = "us-east-2"
    model: str = DEFAULT_MODEL
    reasoning_effort: str = "minimal"
    max_output_tokens: int = 4096
    model_timeout_s: float = 60.0
    model_retries: int = 1
    request_deadline_s: float = 100.0
    price_input_per_m: float = 0.05
    price_cached_input_per_m: float = 0.005
    price_output_per_m: float = 0.40
    emf_endpoint: str = "tcp://127.0.0.1:25888"
    emf_file: Path | None = None
    api_keys_file: Path | None = None
    rate_limit_per_minute: int = 0
    rate_limit_storage: str | None = None
    daily_budget_usd: float = 0.0
    # The shared cache tier (Valkey/Redis, see ``store``); None: none, the disk tier serves.
    cache_url: str | None = None
    cache_password: str | None = field(default=None, repr=False)
    cache_password_secret_id: str | None = None
    cache_timeout_s: float = 0.25
    cache_ca_file: Path | None = None
    # This host in the shared figures (per-host breakdown of the fleet's counters).
    host_name: str = field(default_factory=socket.gethostname)

    @property
    def is_prod(self) -> bool:
        return self.env == "prod"

    @property
    def disk_cache_dir(self) -> Path:
        return self.cache_dir / "cache"

    @property
    def metrics_file(self) -> Path:
        return self.cache_dir / "metrics.json"

    @property
    def limits_storage_uri(self) -> str:
        """Where request counts and budget spend live (see ``rate_limits``)."""
        return self.rate_limit_storage or f"sqlite:///{self.cache_dir.resolve() / 'limits.sqlite'}"

    @property
    def key_usage_file(self) -> Path:
        return self.cache_dir / "key_usage.sqlite"

    @property
    def cache_ttl_s(self) -> float:
        return self.cache_ttl_days * 86400.0

    @property
    def auth_misconfigured(self) -> bool:
        """Production without a client key must never fall back to open access.

        from_env() refuses this outright; the check stays for settings built in code.
        """
        return self.is_prod and not self.api_keys

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def text(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        def number(name: str, default: float, kind: type = float, minimum: float = 0) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
            return value

        iris_env = env.get("IRIS_ENV", "").strip() or "dev"
        if iris_env not in ENVIRONMENTS:
            raise ConfigError(f"IRIS_ENV={iris_env!r} is not one of {', '.join(ENVIRONMENTS)}")
        api_keys = _split_csv(env.get("IRIS_API_KEY"))
        if iris_env == "prod" and not api_keys:
            raise ConfigError("IRIS_ENV=prod needs IRIS_API_KEY (the accepted client keys)")
        deadline = number("IRIS_REQUEST_DEADLINE_S", 100.0, minimum=1)
        if deadline > MAX_REQUEST_DEADLINE_S:
            raise ConfigError(
                f"IRIS_REQUEST_DEADLINE_S must stay below the proxy timeout "
                f"({MAX_REQUEST_DEADLINE_S:.0f} s max), got {deadline}"
            )
        emf_file = env.get("IRIS_EMF_FILE", "").strip()
        cache_url = check_cache_url(env.get("IRIS_CACHE_URL", "").strip())
        ca_file = env.get("IRIS_CACHE_CA_FILE", "").strip()
        if ca_file and not (cache_url or "").startswith("rediss://"):
            raise ConfigError("IRIS_CACHE_CA_FILE is only used with IRIS_CACHE_URL=rediss://...")
        if ca_file and not os.access(ca_file, os.R_OK):
            raise ConfigError(f"IRIS_CACHE_CA_FILE={ca_file!r} is not a readable file")
        cache_timeout = number("IRIS_CACHE_TIMEOUT_S", 0.25, minimum=0.001)
        if cache_timeout > MAX_CACHE_TIMEOUT_S:
            raise ConfigError(
                f"IRIS_CACHE_TIMEOUT_S must be at most {MAX_CACHE_TIMEOUT_S:g} s "
                f"(a slow store is skipped, not waited for), got {cache_timeout:g}"
            )
        keys_file = env.get("IRIS_API_KEYS_FILE", "").strip()
        return cls(
            env=iris_env,
            api_keys=api_keys,
            cache_dir=Path(text("IRIS_CACHE_DIR", ".iris")),
            memory_cache_entries=int(number("IRIS_MEMORY_CACHE_ENTRIES", 500, int, 1)),
            cache_ttl_days=number("IRIS_CACHE_TTL_DAYS", 30.0),
            cache_max_bytes=int(number("IRIS_CACHE_MAX_BYTES", 1024**3, int, 0)),
            max_body_bytes=int(number("IRIS_MAX_BODY_BYTES", 2 * 1024**2, int, 1)),
            cors_origins=_split_csv(env.get("IRIS_CORS_ORIGINS")),
            openai_api_key=env.get("OPENAI_API_KEY", "").strip() or None,
            openai_base_url=env.get("OPENAI_BASE_URL", "").strip() or None,
            openai_secret_id=text("IRIS_OPENAI_SECRET_ID", "iris/openai-api-key"),
            aws_region=text("AWS_REGION", text("AWS_DEFAULT_REGION", "us-east-2")),
            model=text("IRIS_MODEL", DEFAULT_MODEL),
            reasoning_effort=text("IRIS_REASONING_EFFORT", "minimal"),
            max_output_tokens=int(number("IRIS_MAX_OUTPUT_TOKENS", 4096, int, 16)),
            model_timeout_s=number("IRIS_MODEL_TIMEOUT_S", 60.0, minimum=0.1),
            model_retries=int(number("IRIS_MODEL_RETRIES", 1, int, 0)),
            request_deadline_s=deadline,
            price_input_per_m=number("IRIS_PRICE_INPUT_PER_M", 0.05),
            price_cached_input_per_m=number("IRIS_PRICE_CACHED_INPUT_PER_M", 0.005),
            price_output_per_m=number("IRIS_PRICE_OUTPUT_PER_M", 0.40),
            emf_endpoint=text("IRIS_EMF_ENDPOINT", "tcp://127.0.0.1:25888"),
            emf_file=Path(emf_file) if emf_file else None,
            api_keys_file=Path(keys_file) if keys_file else None,
            rate_limit_per_minute=int(number("IRIS_RATE_LIMIT_PER_MINUTE", 0, int)),
            rate_limit_storage=env.get("IRIS_RATE_LIMIT_STORAGE", "").strip() or None,
            daily_budget_usd=number("IRIS_DAILY_BUDGET_USD", 0.0),
            cache_url=cache_url,
            cache_password=env.get("IRIS_CACHE_PASSWORD", "") or None,
            cache_password_secret_id=env.get("IRIS_CACHE_PASSWORD_SECRET_ID", "").strip() or None,
            cache_timeout_s=cache_timeout,
            cache_ca_file=Path(ca_file) if ca_file else None,
            host_name=text("IRIS_HOST_NAME", socket.gethostname()),
        )


def check_cache_url(url: str) -> str | None:
    """``IRIS_CACHE_URL`` as given, or None when empty; ConfigError names what is wrong."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"IRIS_CACHE_URL is not a valid URL ({error})") from None
    shown = redact_url(url)
    if parts.scheme not in CACHE_URL_SCHEMES:
        raise ConfigError(f"IRIS_CACHE_URL={shown!r} must start with redis:// or rediss:// (TLS)")
    if parts.password is not None:
        raise ConfigError(
            "IRIS_CACHE_URL must not carry the password: set IRIS_CACHE_PASSWORD or "
            "IRIS_CACHE_PASSWORD_SECRET_ID"
        )
    if not parts.hostname:
        raise ConfigError(f"IRIS_CACHE_URL={shown!r} names no host")
    if port == 0:
        raise ConfigError(f"IRIS_CACHE_URL={shown!r}: port 0")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ConfigError(f"IRIS_CACHE_URL={shown!r}: the path must be a database number")
    if parts.query or parts.fragment:
        raise ConfigError(
            f"IRIS_CACHE_URL={shown!r}: no query options (use IRIS_CACHE_TIMEOUT_S, "
            "IRIS_CACHE_CA_FILE)"
        )
    return url


def redact_url(url: str) -> str:
    """The URL with any password replaced: safe for logs and errors."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return "<unparsable URL>"
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()
