"""Service settings: built from a mapping (tests) over the environment over embedded defaults, then validated.

Environment variables are the keys below prefixed with ``CREDIT_DECISION_`` (``CREDIT_DECISION_MODEL_NAME``);
``DATABASE_URL`` is also read unprefixed, as twelve-factor deployments expect.

Access control (see :mod:`service.auth`): ``API_KEYS_FILE`` names the key file of hashes (default
``var/api_keys`` under the working directory, optional unless named explicitly); ``API_KEYS``
(env ``CREDIT_DECISION_API_KEYS='scorer:KEY,auditor:KEY'``) gives plain keys for development only and is
hashed here, at once. ``ENV=production`` refuses plain keys and refuses to start without any key.

Limits: ``RATE_LIMIT`` (``scorer:100/second;auditor:20/second,1000/hour``; default off) limits the requests of
each API key, per role (a role not named is not limited); ``RATE_LIMIT_STORAGE`` is where the counts live
(``memory://``, the default, counts per worker process; ``redis://host:6379/0`` shares them between every worker
and replica); ``RATE_LIMIT_KEY_PREFIX`` keeps deployments sharing one Redis apart. ``DATABASE_TIMEOUT`` (seconds,
default 10) bounds every lock wait and (PostgreSQL) statement of a request, below gunicorn's worker timeout, so
a stuck database answers 503 rather than a killed worker.

Retention: ``RETENTION_DAYS`` (default 760 days, about 25 months: Reg B keeps credit decisions for 25
months) is how long decision records are kept; ``credit-decision audit purge`` uses it as its default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from limits import parse_many

from model_store.errors import ContractError
from model_store.store import ModelStore, default_store_root
from service.auth import DEFAULT_KEY_FILE, ROLES, ApiKey, KeyConfigError, parse_key_list
from service.records import DEFAULT_DATABASE_URL

ENV_PREFIX = "CREDIT_DECISION_"
KIB = 1024
DEFAULT_RETENTION_DAYS = 760  # about 25 months (Reg B, 12 CFR 1002.12: 25 months after notice of action)
KEYS = frozenset(
    {
        "MODEL_STORE",
        "MODEL_NAME",
        "MODEL_VERSION",
        "DATABASE_URL",
        "MAX_CONTENT_LENGTH",
        "MAX_BATCH_CONTENT_LENGTH",
        "MAX_JSON_DEPTH",
        "MAX_BATCH_ITEMS",
        "ENV",
        "TESTING",
        "API_KEYS",
        "API_KEYS_FILE",
        "RETENTION_DAYS",
        "SERVING_POLL_SECONDS",
        "SHADOW_QUEUE_SIZE",
        "SHADOW_MAX_SHARE",
        "BACKGROUND",
        "RATE_LIMIT",
        "RATE_LIMIT_STORAGE",
        "RATE_LIMIT_KEY_PREFIX",
        "DATABASE_TIMEOUT",
    }
)
DEFAULT_DATABASE_TIMEOUT = 10.0  # seconds; below gunicorn's worker timeout (30 s)
Environment = Literal["development", "production"]


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    """Validated, typed settings of one app instance."""

    model_store: Path
    model_name: str | None
    model_version: str | None
    database_url: str
    max_content_length: int  # bytes, single decision requests
    max_batch_content_length: int  # bytes, batch requests (also Flask's MAX_CONTENT_LENGTH)
    max_json_depth: int
    max_batch_items: int
    env: Environment
    testing: bool
    api_keys: tuple[ApiKey, ...] = ()  # development keys, already hashed
    api_keys_file: Path = DEFAULT_KEY_FILE
    api_keys_file_required: bool = False  # named explicitly: it must exist
    retention_days: int = DEFAULT_RETENTION_DAYS
    serving_poll_seconds: float = 1.0  # how often each worker reads the serving state
    shadow_queue_size: int = 1024  # live requests waiting for their shadow decisions, per worker
    shadow_max_share: float = 0.08  # while a worker is busy, the most of its CPU its shadow thread may take
    background: bool = True  # poll the serving state in a thread (tests refresh by hand)
    rate_limits: tuple[tuple[str, str], ...] = ()  # (role, limits) pairs; none: no rate limiting
    rate_limit_storage: str = "memory://"
    rate_limit_key_prefix: str = "credit-decision"
    database_timeout: float = DEFAULT_DATABASE_TIMEOUT

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``overrides`` over ``environ`` (default ``os.environ``) over the embedded defaults."""
        environ = os.environ if environ is None else environ
        given = dict(overrides or {})
        unknown = sorted(set(given) - KEYS)
        if unknown:
            raise ConfigError(f"unknown setting(s) {unknown}; known: {sorted(KEYS)}")

        def raw(key: str, *env_names: str) -> Any:
            if key in given:
                return given[key]
            for name in (ENV_PREFIX + key, *env_names):
                if name in environ:
                    return environ[name]
            return None

        store = raw("MODEL_STORE")
        name = raw("MODEL_NAME")
        version = raw("MODEL_VERSION")
        if version is not None and name is None:
            raise ConfigError("MODEL_VERSION needs MODEL_NAME")
        env_raw = raw("ENV") or "development"
        if env_raw not in ("development", "production"):
            raise ConfigError(f"ENV must be 'development' or 'production', got {env_raw!r}")
        env: Environment = "production" if env_raw == "production" else "development"
        dev_keys = _optional_str("API_KEYS", raw("API_KEYS"))
        if dev_keys is not None and env == "production":
            raise ConfigError(
                "API_KEYS (plain keys) is for development only; in production configure API_KEYS_FILE "
                "with key hashes (`credit-decision keys create --role ROLE --file FILE`)"
            )
        try:
            api_keys = tuple(parse_key_list(dev_keys)) if dev_keys else ()
        except KeyConfigError as exc:
            raise ConfigError(str(exc)) from None  # never chain: the message names the entry, not the key
        keys_file = _optional_str("API_KEYS_FILE", raw("API_KEYS_FILE"))
        settings = cls(
            model_store=Path(store) if store else default_store_root(),
            model_name=_optional_str("MODEL_NAME", name),
            model_version=_optional_str("MODEL_VERSION", version),
            database_url=_optional_str("DATABASE_URL", raw("DATABASE_URL", "DATABASE_URL")) or default_database_url(),
            max_content_length=_int(
                "MAX_CONTENT_LENGTH", raw("MAX_CONTENT_LENGTH"), 64 * KIB, 1 * KIB, 16 * 1024 * KIB
            ),
            max_batch_content_length=_int(
                "MAX_BATCH_CONTENT_LENGTH", raw("MAX_BATCH_CONTENT_LENGTH"), 1024 * KIB, 1 * KIB, 64 * 1024 * KIB
            ),
            max_json_depth=_int("MAX_JSON_DEPTH", raw("MAX_JSON_DEPTH"), 16, 4, 256),
            max_batch_items=_int("MAX_BATCH_ITEMS", raw("MAX_BATCH_ITEMS"), 100, 1, 1000),
            env=env,
            testing=_bool("TESTING", raw("TESTING")),
            api_keys=api_keys,
            api_keys_file=Path(keys_file) if keys_file else DEFAULT_KEY_FILE,
            api_keys_file_required=keys_file is not None,
            retention_days=_int("RETENTION_DAYS", raw("RETENTION_DAYS"), DEFAULT_RETENTION_DAYS, 1, 36500),
            serving_poll_seconds=_float("SERVING_POLL_SECONDS", raw("SERVING_POLL_SECONDS"), 1.0, 0.05, 60.0),
            shadow_queue_size=_int("SHADOW_QUEUE_SIZE", raw("SHADOW_QUEUE_SIZE"), 1024, 1, 1_000_000),
            shadow_max_share=_float("SHADOW_MAX_SHARE", raw("SHADOW_MAX_SHARE"), 0.08, 0.01, 1.0),
            background=True if raw("BACKGROUND") is None else _bool("BACKGROUND", raw("BACKGROUND")),
            rate_limits=parse_rate_limits(_optional_str("RATE_LIMIT", raw("RATE_LIMIT")) or ""),
            rate_limit_storage=_optional_str("RATE_LIMIT_STORAGE", raw("RATE_LIMIT_STORAGE")) or "memory://",
            rate_limit_key_prefix=_optional_str("RATE_LIMIT_KEY_PREFIX", raw("RATE_LIMIT_KEY_PREFIX"))
            or "credit-decision",
            database_timeout=_float("DATABASE_TIMEOUT", raw("DATABASE_TIMEOUT"), DEFAULT_DATABASE_TIMEOUT, 0.1, 600.0),
        )
        if settings.max_batch_content_length < settings.max_content_length:
            raise ConfigError("MAX_BATCH_CONTENT_LENGTH must be at least MAX_CONTENT_LENGTH")
        return settings

    def served_version(self, store: ModelStore | None = None) -> tuple[str, str]:
        """(name, version) to serve: MODEL_NAME / MODEL_VERSION if set (newest version of the name), else the
        champion of the model store; ConfigError saying what is missing."""
        store = store if store is not None else ModelStore(self.model_store)
        try:
            return store.resolve(self.model_name, self.model_version)
        except ContractError as exc:
            raise ConfigError(str(exc)) from None


def parse_rate_limits(text: str) -> tuple[tuple[str, str], ...]:
    """``role:LIMITS;role:LIMITS`` (LIMITS in the limits library's notation, several joined by commas, e.g.
    ``100/second,2000/minute``) -> (role, LIMITS) pairs; ConfigError naming the entry that is wrong."""
    pairs: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(";")):
        if not entry:
            continue
        role, sep, limit = (item.strip() for item in entry.partition(":"))
        if not sep or role not in ROLES:
            raise ConfigError(f"RATE_LIMIT entry {entry!r} must be ROLE:LIMITS with ROLE one of {list(ROLES)}")
        if role in pairs:
            raise ConfigError(f"RATE_LIMIT names the role {role!r} twice")
        try:
            if not parse_many(limit):
                raise ValueError(limit)
        except ValueError:
            raise ConfigError(
                f"RATE_LIMIT entry {entry!r}: {limit!r} is not a rate limit like '100/second' or '10 per minute'"
            ) from None
        pairs[role] = limit
    return tuple(pairs.items())


def default_database_url() -> str:
    """SQLite file ``var/decisions.sqlite3`` under the current working directory."""
    return DEFAULT_DATABASE_URL


def _optional_str(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _int(key: str, value: Any, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got a boolean")
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key} must be an integer, got {value!r}") from exc
    if not low <= number <= high:
        raise ConfigError(f"{key} must be between {low} and {high}, got {number}")
    return number


def _float(key: str, value: Any, default: float, low: float, high: float) -> float:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key} must be a number, got {value!r}") from exc
    if not low <= number <= high:
        raise ConfigError(f"{key} must be between {low:g} and {high:g}, got {number:g}")
    return number


def _bool(key: str, value: Any) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key} must be true or false, got {value!r}")
