"""API keys with ids and limits: from the environment, and created through ``/admin/keys``.

A key is kept only as its sha256 digest; what identifies it everywhere else
(request log, metrics, headers, admin listings) is its short, non-secret id.

Sources (the variables are read once, by gateway/settings.py):

- ``SMALLFLEET_API_KEYS``: a comma list of ``KEY`` or ``NAME:KEY`` entries.
  A named key's id is ``NAME``; an unnamed key's id is ``key-`` plus the first
  8 hex digits of its digest.
- ``SMALLFLEET_KEY_LIMITS``: JSON ``{"*": {...}, "ID": {...}}`` with ``rpm``,
  ``tpm`` and ``budget`` per key id; ``"*"`` is the default for every key
  (and for any field an admin-created key leaves out).
- ``POST /admin/keys``: keys made by the gateway, persisted (digest only) in
  the request-log database so they survive restarts; ``DELETE`` revokes them.

With a shared store (``state.url``) keys made and revoked through ``/admin/keys`` reach every
replica (:mod:`gateway.shared.keys`, through :meth:`KeyStore.apply`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from backends.errors import RequestError
from gateway.errors import NotFound
from gateway.request_log import StoredKey
from gateway.settings import ADMIN_KEYS_ENV as ADMIN_KEYS_ENV  # named here too: auth and endpoints use it
from gateway.settings import API_KEYS_ENV, KEY_LIMITS_ENV, Settings

DEFAULT_LIMITS_ID = "*"
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
SECRET_PREFIX = "sk-sf-"

Source = Literal["env", "admin"]


class KeyConflict(RequestError):
    status_code = 409
    code = "key_conflict"


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Per-key limits; ``None`` is unlimited. ``budget`` is in the fleet's cost units."""

    rpm: int | None = None
    tpm: int | None = None
    budget: float | None = None

    def over(self, defaults: KeyLimits) -> KeyLimits:
        """These limits, with ``defaults`` filling the unset ones."""
        return KeyLimits(
            rpm=self.rpm if self.rpm is not None else defaults.rpm,
            tpm=self.tpm if self.tpm is not None else defaults.tpm,
            budget=self.budget if self.budget is not None else defaults.budget,
        )

    @classmethod
    def parse(cls, raw: Any, where: str) -> KeyLimits:
        if not isinstance(raw, dict) or set(raw) - {"rpm", "tpm", "budget"}:
            raise ValueError(f"{where}: expected an object with rpm, tpm and/or budget")
        for field in ("rpm", "tpm"):
            value = raw.get(field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{where}.{field}: expected a positive integer, got {value!r}")
        budget = raw.get("budget")
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int | float) or budget < 0
        ):
            raise ValueError(f"{where}.budget: expected a number >= 0, got {budget!r}")
        return cls(raw.get("rpm"), raw.get("tpm"), None if budget is None else float(budget))


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    digest: str  # sha256, hex
    limits: KeyLimits  # as configured; the store's defaults fill the gaps
    source: Source
    created_at: float
    revoked_at: float | None = None

    def __repr__(self) -> str:  # the digest is not a secret, but has no business in logs either
        return f"ApiKey(id={self.id!r}, source={self.source!r}, revoked={self.revoked_at is not None})"


class KeyTable(Protocol):
    """Where admin-created keys persist (the request log's database)."""

    async def save_key(self, key: StoredKey) -> None: ...
    async def revoke_key(self, key_id: str, at: float) -> bool: ...
    async def keys(self) -> list[StoredKey]: ...


def _parse_limits(raw: str) -> dict[str, KeyLimits]:
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{KEY_LIMITS_ENV} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{KEY_LIMITS_ENV}: expected a JSON object keyed by key id (or '*')")
    return {str(k): KeyLimits.parse(v, f"{KEY_LIMITS_ENV}[{k!r}]") for k, v in parsed.items()}


def split_key_entry(entry: str) -> tuple[str | None, str]:
    """``NAME:KEY`` -> (NAME, KEY); a bare ``KEY`` -> (None, KEY)."""
    name, sep, secret = entry.partition(":")
    if sep and secret and KEY_ID_PATTERN.match(name):
        return name, secret
    return None, entry


class KeyStore:
    """Every known key by digest and by id; checks a presented key in constant time per digest."""

    def __init__(self, entries: Iterable[str] = (), *, limits: Mapping[str, KeyLimits] | None = None) -> None:
        limits = dict(limits or {})
        self.defaults = limits.pop(DEFAULT_LIMITS_ID, KeyLimits())
        self._by_id: dict[str, ApiKey] = {}
        self._by_digest: dict[str, ApiKey] = {}
        now = time.time()
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            name, secret = split_key_entry(entry)
            digest = digest_of(secret)
            key_id = name or f"key-{digest[:8]}"
            self._add(ApiKey(key_id, digest, limits.get(key_id, KeyLimits()), "env", now))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        """The API keys of ``SMALLFLEET_API_KEYS`` with the limits of ``SMALLFLEET_KEY_LIMITS``
        (a malformed entry is a ValueError naming it)."""
        return cls(settings.api_keys.split(","), limits=_parse_limits(settings.key_limits))

    def _add(self, key: ApiKey) -> None:
        if key.id in self._by_id or key.digest in self._by_digest:
            raise ValueError(f"API key {key.id!r} is configured twice")
        self._by_id[key.id] = key
        self._by_digest[key.digest] = key

    # -- checking ---------------------------------------------------------
    def __bool__(self) -> bool:
        """Whether auth is on: any key known, revoked ones included (revoking the last key
        must not open the gateway)."""
        return bool(self._by_id)

    def authenticate(self, secret: str) -> ApiKey | None:
        """The active key whose digest matches ``secret``, or None."""
        digest = digest_of(secret)
        key = self._by_digest.get(digest)
        if key is None or not hmac.compare_digest(key.digest, digest) or key.revoked_at is not None:
            return None
        return key

    def accepts(self, secret: str) -> bool:
        return self.authenticate(secret) is not None

    def get(self, key_id: str) -> ApiKey | None:
        return self._by_id.get(key_id)

    def limits_of(self, key: ApiKey) -> KeyLimits:
        return key.limits.over(self.defaults)

    def all(self) -> list[ApiKey]:
        return sorted(self._by_id.values(), key=lambda k: k.id)

    # -- persisted keys -----------------------------------------------------
    def apply(self, row: StoredKey) -> bool:
        """A key made or revoked elsewhere (another replica, through the shared store): add it or
        mark it revoked; a revocation is never undone. Returns whether anything changed. A
        different key under a known id or digest is refused (ValueError)."""
        known, changed = self._by_id.get(row.id), False
        if known is None:
            limits = KeyLimits(row.rpm, row.tpm, row.budget)
            self._add(ApiKey(row.id, row.digest, limits, "admin", row.created_at))
            known, changed = self._by_id[row.id], True
        elif known.source != "admin" or not hmac.compare_digest(known.digest, row.digest):
            raise ValueError(f"API key {row.id!r} is a different key here")
        if row.revoked_at is not None and known.revoked_at is None:
            revoked = replace(known, revoked_at=row.revoked_at)
            self._by_id[row.id] = self._by_digest[row.digest] = revoked
            changed = True
        return changed

    def stored(self) -> list[StoredKey]:
        """The keys made through ``/admin/keys`` (revoked ones included), as tables keep them."""
        return [
            StoredKey(k.id, k.digest, k.limits.rpm, k.limits.tpm, k.limits.budget, k.created_at, k.revoked_at)
            for k in self.all()
            if k.source == "admin"
        ]

    async def load(self, table: KeyTable) -> None:
        """Add the keys made through ``/admin/keys`` in earlier runs."""
        for row in await table.keys():
            limits = KeyLimits(row.rpm, row.tpm, row.budget)
            self._add(ApiKey(row.id, row.digest, limits, "admin", row.created_at, row.revoked_at))

    async def create(self, table: KeyTable, name: str, limits: KeyLimits) -> tuple[ApiKey, str]:
        """A new key named ``name``; returns it and its secret (shown once, never stored)."""
        if name in self._by_id:
            raise KeyConflict(f"a key named {name!r} exists already", param="name")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(name, digest_of(secret), limits, "admin", time.time())
        await table.save_key(
            StoredKey(key.id, key.digest, limits.rpm, limits.tpm, limits.budget, key.created_at)
        )
        self._add(key)
        return key, secret

    async def revoke(self, table: KeyTable, key_id: str) -> ApiKey:
        key = self._by_id.get(key_id)
        if key is None:
            raise NotFound(f"no API key with id {key_id!r}", param="id")
        if key.source == "env":
            raise KeyConflict(
                f"key {key_id!r} comes from {API_KEYS_ENV}; remove it there and restart", param="id"
            )
        if key.revoked_at is not None:
            return key
        at = time.time()
        await table.revoke_key(key_id, at)
        revoked = replace(key, revoked_at=at)
        self._by_id[key_id] = self._by_digest[key.digest] = revoked
        return revoked
