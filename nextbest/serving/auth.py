"""Who may call the API: API keys (stored as sha256 hashes, compared in constant time), the scope each
route needs, and a token bucket per key.

A key file (``serving.api_keys_file``, else ``<home>/api_keys.yaml``) and/or env ``NEXTBEST_API_KEYS``
hold, in yaml or json::

    keys:
      - {id: crm-app, sha256: <hex sha256 of the key>, scopes: [rank, batch], rate_per_s: 500}

A client sends its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. ``required_scope``
maps a path to its scope (``/rank`` -> rank, ``/rank/batch`` -> batch, ``/score/...`` -> score,
``/metrics`` -> admin; any other path, e.g. ``/ready`` or ``/docs``, needs a valid key of any scope);
``serving.open_routes`` (default ``/health``) need none. ``nextbest.serving.gate`` applies it to every
request before routing, so routers mounted later are covered too.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nextbest.errors import UserError
from nextbest.settings import ServingSettings, Settings

SCOPES: tuple[str, ...] = ("rank", "batch", "score", "admin")
"""Every scope a key may hold."""

DEFAULT_KEYS_FILE = "api_keys.yaml"
"""The key file under ``home`` when ``serving.api_keys_file`` is not set."""

KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A key id: what logs and metrics show of a caller (never the key)."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ApiKeyConfigError(UserError):
    """The API keys configured are unreadable or invalid (names the source and the entry)."""


class UnauthenticatedStartError(UserError):
    """``nextbest serve`` on a non-loopback interface without any API key configured."""


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its id, the sha256 digest of the secret, its scopes and its rate (None: the
    settings' ``rate_limit_per_s`` / ``rate_limit_burst``)."""

    key_id: str
    digest: bytes
    scopes: frozenset[str]
    rate_per_s: float | None = None
    burst: int | None = None


def key_digest(key: str) -> bytes:
    """The sha256 digest of a presented key (what is stored and compared)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def keys_path(settings: Settings, serving: ServingSettings | None = None) -> Path:
    """The key file: ``serving.api_keys_file``, else ``<home>/api_keys.yaml``."""
    serving = serving or settings.serving
    return Path(serving.api_keys_file) if serving.api_keys_file else settings.home / DEFAULT_KEYS_FILE


def _entry(raw: Any, source: str, i: int) -> ApiKey:
    where = f"{source}: key #{i + 1}"
    if not isinstance(raw, dict):
        raise ApiKeyConfigError(f"{where}: expected a mapping with id, sha256, scopes")
    key_id, digest, scopes = raw.get("id"), str(raw.get("sha256", "")), raw.get("scopes")
    if not isinstance(key_id, str) or not KEY_ID.match(key_id):
        raise ApiKeyConfigError(f"{where}: id {key_id!r} must match {KEY_ID.pattern}")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ApiKeyConfigError(f"{where} ({key_id}): sha256 must be 64 lowercase hex characters")
    if not isinstance(scopes, list) or not scopes or not set(scopes) <= set(SCOPES):
        raise ApiKeyConfigError(f"{where} ({key_id}): scopes must be a non-empty list of {list(SCOPES)}")
    rate, burst = raw.get("rate_per_s"), raw.get("burst")
    if rate is not None and (not isinstance(rate, int | float) or rate < 0):
        raise ApiKeyConfigError(f"{where} ({key_id}): rate_per_s must be a number >= 0")
    if burst is not None and (not isinstance(burst, int) or burst < 1):
        raise ApiKeyConfigError(f"{where} ({key_id}): burst must be an integer >= 1")
    return ApiKey(key_id, bytes.fromhex(digest), frozenset(scopes), rate, burst)


def parse_keys(text: str, source: str) -> list[ApiKey]:
    """The keys of one yaml/json document (``{keys: [...]}`` or the bare list); ``source`` names it in
    errors."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ApiKeyConfigError(f"{source}: not yaml/json ({type(exc).__name__})") from exc
    entries = doc.get("keys") if isinstance(doc, dict) else doc
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ApiKeyConfigError(f"{source}: expected a list of keys under 'keys'")
    keys = [_entry(raw, source, i) for i, raw in enumerate(entries)]
    seen: set[str] = set()
    for key in keys:
        if key.key_id in seen:
            raise ApiKeyConfigError(f"{source}: key id {key.key_id!r} appears twice")
        seen.add(key.key_id)
    return keys


class KeyRing:
    """The configured keys; ``identify`` finds the key a request presents."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        self.keys = tuple(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def identify(self, presented: str) -> ApiKey | None:
        """The configured key whose digest equals the presented key's (every key is compared, each
        with ``hmac.compare_digest``), or None."""
        digest = key_digest(presented)
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def load_keyring(settings: Settings, serving: ServingSettings | None = None) -> KeyRing:
    """The keys of the key file (when it exists) and of ``serving.api_keys`` (env ``NEXTBEST_API_KEYS``).

    Raises:
        ApiKeyConfigError: a source is invalid, a configured file is missing, or an id appears twice.
    """
    serving = serving or settings.serving
    path = keys_path(settings, serving)
    keys: list[ApiKey] = []
    if path.exists():
        keys += parse_keys(path.read_text(encoding="utf-8"), str(path))
    elif serving.api_keys_file is not None:
        raise ApiKeyConfigError(f"api_keys_file {path} does not exist")
    if serving.api_keys:
        keys += parse_keys(serving.api_keys, "NEXTBEST_API_KEYS")
    ids = [k.key_id for k in keys]
    doubled = sorted({i for i in ids if ids.count(i) > 1})
    if doubled:
        raise ApiKeyConfigError(f"key id(s) {doubled} appear both in {path} and in NEXTBEST_API_KEYS")
    return KeyRing(keys)


def check_can_start(host: str, keyring: KeyRing, allow_unauthenticated: bool) -> None:
    """Refuse to serve a non-loopback interface without any key (unless explicitly allowed).

    Raises:
        UnauthenticatedStartError: ``host`` is not loopback, no key is configured, no override.
    """
    if keyring or allow_unauthenticated or host in LOOPBACK_HOSTS:
        return
    raise UnauthenticatedStartError(
        f"refusing to serve {host} without API keys: anyone reaching the port could rank any customer; "
        "add one with `nextbest serve keys add --id NAME --scopes rank,batch` (or set NEXTBEST_API_KEYS), "
        "or pass --allow-unauthenticated"
    )


def new_key() -> str:
    """A fresh random key (256 bits, url-safe)."""
    return "nbk_" + secrets.token_urlsafe(32)


def add_key(path: Path, key_id: str, scopes: Iterable[str], rate_per_s: float | None = None) -> str:
    """Add a new key ``key_id`` with ``scopes`` to the key file at ``path`` (created 0600 if missing;
    rewritten atomically) and return the key: the only time it is shown; the file keeps its hash.

    Raises:
        ApiKeyConfigError: invalid id or scopes, or the id exists already.
    """
    scopes = sorted(set(scopes))
    entries: list[dict[str, Any]] = []
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if any(k.key_id == key_id for k in parse_keys(text, str(path))):
            raise ApiKeyConfigError(f"{path}: key id {key_id!r} exists already")
        doc = yaml.safe_load(text)
        entries = list((doc.get("keys") if isinstance(doc, dict) else doc) or [])
    key = new_key()
    entry: dict[str, Any] = {"id": key_id, "sha256": key_digest(key).hex(), "scopes": scopes}
    if rate_per_s is not None:
        entry["rate_per_s"] = rate_per_s
    _entry(entry, str(path), len(entries))  # the same rules as on reading
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        yaml.safe_dump({"keys": [*entries, entry]}, f, sort_keys=False)
    tmp.replace(path)
    return key


def required_scope(path: str) -> str | None:
    """The scope ``path`` needs (None: any valid key)."""
    if path == "/rank":
        return "rank"
    if path == "/rank/batch":
        return "batch"
    if path.startswith("/score/"):
        return "score"
    if path == "/metrics":
        return "admin"
    return None


def presented_key(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The key of ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (raw ASGI headers)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value:
            return value.decode("latin-1").strip()
    return None


# --------------------------------------------------------------------------- rate limit


class TokenBuckets:
    """A token bucket per key id: ``rate`` tokens per second up to ``burst``; one request takes one.
    Not thread-safe: used from the event loop only."""

    def __init__(self, rate_per_s: float, burst: int, clock=time.monotonic) -> None:  # noqa: ANN001
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: ApiKey) -> float:
        """0 when ``key`` may send a request now (a token is taken), else the seconds until it may."""
        rate = self.rate_per_s if key.rate_per_s is None else key.rate_per_s
        if rate <= 0:
            return 0.0
        burst = float(key.burst or self.burst)
        now = self._clock()
        tokens, then = self._buckets.get(key.key_id, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        if tokens >= 1.0:
            self._buckets[key.key_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key.key_id] = (tokens, now)
        return (1.0 - tokens) / rate


def retry_after_header(wait_s: float) -> str:
    """Whole seconds for a ``Retry-After`` header (at least 1)."""
    return str(max(1, math.ceil(wait_s)))
