"""Access control: API keys with roles, kept only as sha256 hashes, checked by ``@require_role(...)``.

Roles and what they may call (a key may hold several roles; no role implies another — an admin key
cannot score or read records unless it also holds ``scorer`` or ``auditor``)::

    scorer   POST /v1/decisions, POST /v1/decisions:batch
    auditor  GET /v1/decisions (search), GET /v1/decisions/export, GET /v1/decisions/{id},
             POST /v1/decisions/{id}/replay, GET /v1/reports, GET /v1/decisions/{id}/notice
    admin    GET /v1/models, POST /v1/outcomes (the only write besides decisions: auditors stay read-only)
    reviewer GET /v1/reviews/queue, GET /v1/reviews/codes, GET and POST /v1/decisions/{id}/review (human review
             of referred decisions: the final decision with a justification, recorded as an audit event)
    public   /healthz, /readyz, /metrics, /openapi.json, /docs, /v1/schema, the console's static page

Key file (``API_KEYS_FILE``, default ``var/api_keys``): one key per line as ``role:sha256hex[:label]``,
where ``sha256hex`` is the hex sha256 of the key's UTF-8 text; blank lines and lines starting with ``#``
are ignored. The same hash on several lines gives that key several roles. ``credit-decision keys create``
prints a new key once and appends its line. For development only, ``CREDIT_DECISION_API_KEYS`` may hold
plain keys as ``role:KEY,role:KEY``; they are hashed when the settings are read.

A request presents its key as ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``). The presented
key is hashed and compared with every configured hash by ``hmac.compare_digest`` (no early exit). A
decision records who made it by key id (the first 12 hex digits of the hash), label and role, never
the key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from flask import Flask, current_app, g, request

from service.errors import Forbidden, Unauthenticated
from service.private_files import open_private

ROLES = ("scorer", "auditor", "admin", "reviewer")
KEY_PREFIX = "cdk_"
KEY_ID_LENGTH = 12
DEFAULT_KEY_FILE = Path("var") / "api_keys"
EXTENSION_KEY = "credit_decision_auth"
REALM = "credit-decision"
MAX_PRESENTED_KEY = 512

_HASH = re.compile(r"[0-9a-f]{64}\Z")
_LABEL = re.compile(r"[\x20-\x7e]{0,100}\Z")
_BEARER = re.compile(r"bearer[ \t]+(\S+)[ \t]*\Z", re.IGNORECASE)

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class KeyConfigError(ValueError):
    """The key file or the development key list is malformed; the message names the line or entry."""


@dataclass(frozen=True)
class ApiKey:
    """One configured key, by hash: its role and a label naming who holds it."""

    role: str
    key_hash: str
    label: str = ""

    @property
    def key_id(self) -> str:
        """The first 12 hex digits of the hash: names the key in records and logs."""
        return self.key_hash[:KEY_ID_LENGTH]

    def line(self) -> str:
        """The key-file line of this key."""
        return f"{self.role}:{self.key_hash}" + (f":{self.label}" if self.label else "")


@dataclass(frozen=True)
class Principal:
    """The caller a valid key identifies."""

    key_id: str
    label: str
    roles: frozenset[str]

    def record(self, role: str) -> dict[str, str]:
        """What a record keeps about who acted, in ``role``: key id, label and role (never the key)."""
        return {"key_id": self.key_id, "label": self.label, "role": role}


def hash_key(key: str) -> str:
    """Hex sha256 of a key's UTF-8 text."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _check_role(role: str, where: str) -> str:
    if role not in ROLES:
        raise KeyConfigError(f"{where}: unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


def _check_label(label: str, where: str) -> str:
    if not _LABEL.match(label):
        raise KeyConfigError(f"{where}: a label is at most 100 printable ASCII characters")
    return label


def parse_key_file(text: str, source: str = "API_KEYS_FILE") -> list[ApiKey]:
    """Key-file lines ``role:sha256hex[:label]``; blank lines and ``#`` comments are skipped."""
    keys: list[ApiKey] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source} line {number}"
        role, sep, rest = line.partition(":")
        if not sep:
            raise KeyConfigError(f"{where}: expected role:sha256hex[:label]")
        key_hash, _sep, label = rest.partition(":")
        key_hash = key_hash.strip().lower()
        if not _HASH.match(key_hash):
            raise KeyConfigError(f"{where}: expected the 64 hex digits of a key's sha256, not a key")
        keys.append(ApiKey(_check_role(role.strip(), where), key_hash, _check_label(label.strip(), where)))
    return keys


def parse_key_list(text: str) -> list[ApiKey]:
    """Development keys ``role:KEY,role:KEY``: hashed at once, the plain keys are not kept."""
    keys: list[ApiKey] = []
    for index, entry in enumerate(text.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        where = f"API_KEYS entry {index}"
        role, sep, key = entry.partition(":")
        if not sep or not key.strip():
            raise KeyConfigError(f"{where}: expected role:KEY")
        if len(key.strip()) < 16:
            raise KeyConfigError(f"{where}: a key must be at least 16 characters")
        keys.append(ApiKey(_check_role(role.strip(), where), hash_key(key.strip()), f"env:{role.strip()}"))
    return keys


def read_key_file(path: Path) -> list[ApiKey]:
    """The keys of a key file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyConfigError(f"API_KEYS_FILE {path}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise KeyConfigError(f"API_KEYS_FILE {path}: is not UTF-8 text") from exc
    return parse_key_file(text, source=str(path))


def append_key(path: Path, key: ApiKey) -> None:
    """Append a key's line to a key file (created with mode 0600, folders as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    needs_newline = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
    with open(path, "a", encoding="utf-8", opener=open_private) as out:
        out.write(("\n" if needs_newline else "") + key.line() + "\n")


def remove_key(path: Path, key_id: str) -> list[ApiKey]:
    """Remove every line of a key file whose key has ``key_id`` (comments and other lines kept as they are);
    the file is rewritten atomically with mode 0600. Returns the removed keys (empty: nothing matched)."""
    text = path.read_text(encoding="utf-8")
    kept: list[str] = []
    removed: list[ApiKey] = []
    for raw in text.splitlines():
        parsed = parse_key_file(raw, source=str(path)) if raw.strip() and not raw.strip().startswith("#") else []
        if parsed and parsed[0].key_id == key_id:
            removed.append(parsed[0])
        else:
            kept.append(raw)
    if removed:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8", opener=open_private) as out:
            out.write("".join(line + "\n" for line in kept))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    return removed


class KeyRing:
    """The configured keys, by hash; authenticates presented keys in constant time per key."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = tuple(keys)

    def __len__(self) -> int:
        return len({k.key_hash for k in self._keys})

    @property
    def roles(self) -> frozenset[str]:
        """Every role some key holds."""
        return frozenset(k.role for k in self._keys)

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of a presented key, or None; compares the key's hash with every configured hash."""
        digest = hash_key(presented)
        roles: set[str] = set()
        found: ApiKey | None = None
        for key in self._keys:
            # every hash is compared, so the time taken does not tell which key (or how much of one) matched
            if hmac.compare_digest(key.key_hash, digest):
                roles.add(key.role)
                found = found or key
        if found is None:
            return None
        return Principal(key_id=found.key_id, label=found.label, roles=frozenset(roles))


#: How often (at most) a request checks whether the key file changed: every request (one stat(2), microseconds),
#: so a revoked key's next request is refused.
KEY_FILE_CHECK_SECONDS = 0.0


class WatchedKeys:
    """The keys an app accepts: fixed (development) keys plus the key file's, re-read when the file changes.

    A request looks at the file's status (inode, size, modification and change times) at most once every
    ``interval`` seconds (default: every request) and re-reads the file when that changed, so
    ``credit-decision keys create`` and ``keys revoke`` take effect at the next request in every worker, without a
    restart. :meth:`expire` makes the next request re-read it regardless (a gunicorn worker calls it on SIGHUP).
    A file that no longer exists holds no keys (every key it held stops working); a file that became malformed
    or unreadable is reported in the log once and the keys read before stay in force until it is fixed
    (``keys create`` appends a whole line and ``keys revoke`` replaces the file atomically, so neither leaves it so).

    Safe under several request threads (gthread workers): a re-read happens under a lock and is skipped by a thread
    that finds it done meanwhile; the keys in force are swapped whole (one attribute), so a request sees the old
    ring or the new one, never a mix; the check time and :meth:`expire` only ever cause one more ``stat``.
    """

    def __init__(
        self,
        fixed: Iterable[ApiKey],
        path: Path | None,
        interval: float = KEY_FILE_CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fixed = tuple(fixed)
        self._path = path
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._ring = KeyRing(self._fixed)
        self._checked = -math.inf
        self._check(strict=True)

    def __len__(self) -> int:
        return len(self._ring)

    @property
    def roles(self) -> frozenset[str]:
        """Every role some key holds."""
        return self._ring.roles

    def expire(self) -> None:
        """Re-read the key file at the next request, changed or not."""
        self._signature = None
        self._checked = -math.inf

    def current(self) -> KeyRing:
        """The keys in force, the key file re-read first if it changed (checked at most once per interval)."""
        if self._path is not None and (self._interval <= 0 or self._clock() - self._checked >= self._interval):
            self._check()
        return self._ring

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of a presented key among the keys in force, or None."""
        return self.current().authenticate(presented)

    def _status(self, strict: bool) -> tuple[int, ...] | None:
        """The key file's signature (() when absent), None when it cannot be looked at (logged)."""
        assert self._path is not None
        try:
            info = self._path.stat()
        except FileNotFoundError:
            return ()
        except OSError as exc:
            if strict:
                raise KeyConfigError(f"API_KEYS_FILE {self._path}: cannot be read ({exc.strerror or exc})") from exc
            log.error("API_KEYS_FILE %s cannot be read (%s); the keys read before stay in force", self._path, exc)
            return None
        if not stat.S_ISREG(info.st_mode):
            return ()
        return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def _check(self, strict: bool = False) -> None:
        """Re-read the key file if its status changed; ``strict`` (at start-up): a malformed or unreadable file
        raises KeyConfigError instead of keeping the keys read before."""
        self._checked = self._clock()
        if self._path is None:
            return
        signature = self._status(strict)
        if signature is None or signature == self._signature:
            return
        with self._lock:
            if signature == self._signature:  # another thread re-read it meanwhile
                return
            keys: list[ApiKey] = []
            if signature:
                try:
                    keys = read_key_file(self._path)
                except KeyConfigError as exc:
                    if strict:
                        raise
                    self._signature = signature  # reported once per change of the file, not at every request
                    log.error("%s; the keys read before stay in force until the file is fixed", exc)
                    return
            elif self._signature:
                log.warning("API_KEYS_FILE %s is gone: only the development keys (if any) are accepted", self._path)
            self._ring = KeyRing([*self._fixed, *keys])
            self._signature = signature
        if not strict:
            log.info("API_KEYS_FILE %s re-read: %d key(s), roles %s", self._path, len(self._ring),
                     ", ".join(sorted(self._ring.roles)) or "none")  # fmt: skip


def init_app(app: Flask, keys: KeyRing | WatchedKeys) -> None:
    """Install the keys of an app (fixed, or watched: the key file re-read when it changes)."""
    app.extensions[EXTENSION_KEY] = keys


def expire_keys(app: Flask) -> None:
    """Have the app re-read its key file at the next request (SIGHUP)."""
    keys = app.extensions.get(EXTENSION_KEY)
    if isinstance(keys, WatchedKeys):
        keys.expire()


def _presented_key() -> str | None:
    header = request.headers.get("Authorization")
    if header is not None:
        match = _BEARER.match(header)
        return match.group(1) if match else ""
    api_key = request.headers.get("X-API-Key")
    return None if api_key is None else api_key.strip()


def challenge(error: str | None) -> str:
    """The ``WWW-Authenticate`` value of a 401 answer (RFC 6750), with the error code when a key was sent."""
    return f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")


def authenticate() -> Principal:
    """The caller of the current request, or Unauthenticated."""
    presented = _presented_key()
    if presented is None:
        raise Unauthenticated("an API key is required: send `Authorization: Bearer <key>` (or `X-API-Key: <key>`)")
    keys = current_app.extensions[EXTENSION_KEY]
    assert isinstance(keys, KeyRing | WatchedKeys)
    principal = keys.authenticate(presented) if 0 < len(presented) <= MAX_PRESENTED_KEY else None
    if principal is None:
        raise Unauthenticated("the API key is not valid", reason="invalid_token")
    return principal


def require_role(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view: the caller's key must hold one of ``roles`` (401 without a valid key, 403 otherwise)."""
    if not roles or any(role not in ROLES for role in roles):
        raise ValueError(f"require_role needs one or more of {ROLES}, got {roles}")
    allowed = frozenset(roles)

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            principal = authenticate()
            granted = sorted(principal.roles & allowed)
            if not granted:
                raise Forbidden(
                    f"this endpoint needs the role {' or '.join(sorted(allowed))}; "
                    f"the key {principal.key_id} holds {', '.join(sorted(principal.roles))}"
                )
            g.credit_decision_principal = principal
            g.credit_decision_role = granted[0]
            return view(*args, **kwargs)

        guarded.required_roles = tuple(sorted(allowed))  # type: ignore[attr-defined]
        return guarded

    return decorate


def current_principal() -> tuple[Principal, str]:
    """The authenticated caller of the current request and the role it acts in (inside a guarded view)."""
    principal = g.get("credit_decision_principal")
    role = g.get("credit_decision_role")
    if not isinstance(principal, Principal) or not isinstance(role, str):
        raise RuntimeError("current_principal() outside a view guarded by @require_role")
    return principal, role


def required_roles(view: Any) -> Sequence[str] | None:
    """The roles a view requires, or None for a public view."""
    roles = getattr(view, "required_roles", None)
    return tuple(roles) if roles is not None else None
