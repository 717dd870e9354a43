"""API keys made through ``/admin/keys``, shared by every replica through the store.

The store keeps a hash ``{prefix}:keys`` (key id -> JSON of its sha256 digest, limits,
``created_at`` and ``revoked_at``; never the secret) and ``{prefix}:keys:version``, a random
token that every change replaces (a token, not a counter: a store that lost its data and
counted up again could show a replica the number it last saw, and that replica would miss
every change since). :class:`SharedKeyTable` is the :class:`~gateway.keys.KeyTable` the
admin endpoints write through:

- **create** claims the id in the store first (``HSETNX``, so two replicas cannot make two keys
  of one name), then saves it to this replica's request log as without a store. With the
  store unreachable nothing is made: 503 ``state_unavailable`` (an id must be unique
  fleet-wide).
- **revoke** marks the key revoked in the store, then in the request log. With the store
  unreachable it is revoked here and in the log at once, and pushed to the store by the first
  sync that reaches it; other replicas refuse it from then.
- **sync** (:meth:`SharedKeyTable.sync`, from the poll of :mod:`gateway.shared.sync`): when
  the version moved, read the hash; add the keys this replica lacks, apply revocations (never
  undone), and push back what the store lacks: keys from this replica's request log (made
  before the store was configured, or kept while the store lost its data) and revocations.
  Merging is "revoked wins", so a store that lost its data cannot bring a revoked key back
  from a replica that saw the revocation.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson

from gateway.errors import StateUnavailable
from gateway.keys import KeyConflict, KeyStore, KeyTable
from gateway.request_log import StoredKey
from gateway.shared.store import SharedStore

logger = logging.getLogger("smallfleet.state")

# KEYS: hash, version. ARGV: id, row, new version. 1 if made, 0 if the id is taken.
CREATE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('SET', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: hash, version. ARGV: id, time, new version. 1 if revoked now, 0 if unknown or revoked before.
REVOKE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local row = cjson.decode(raw)
if row.revoked_at ~= cjson.null then return 0 end
row.revoked_at = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(row))
redis.call('SET', KEYS[2], ARGV[3])
return 1
"""

# KEYS: hash, version. ARGV: new version, then id, row, id, row, ... Adds unknown ids; a
# revocation of the same key (same digest) wins over an active row.
MERGE = """
local changed = false
for i = 2, #ARGV, 2 do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if not raw then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed = true
  else
    local have, incoming = cjson.decode(raw), cjson.decode(ARGV[i + 1])
    local revokes = have.revoked_at == cjson.null and incoming.revoked_at ~= cjson.null
    if have.digest == incoming.digest and revokes then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
      changed = true
    end
  end
end
if changed then redis.call('SET', KEYS[2], ARGV[1]) end
return changed
"""

_FIELDS = ("digest", "rpm", "tpm", "budget", "created_at", "revoked_at")


def _new_version() -> str:
    return secrets.token_hex(8)


def encode_key(key: StoredKey) -> str:
    return orjson.dumps({name: getattr(key, name) for name in _FIELDS}).decode()


def decode_key(key_id: str, raw: str) -> StoredKey:
    row: dict[str, Any] = orjson.loads(raw)
    return StoredKey(
        key_id,
        row["digest"],
        row.get("rpm"),
        row.get("tpm"),
        row.get("budget"),
        row["created_at"],
        row.get("revoked_at"),
    )


class SharedKeyTable:
    """A :class:`~gateway.keys.KeyTable` through the store to ``inner`` (the request log's)."""

    def __init__(self, store: SharedStore, known: KeyStore, inner: KeyTable | None) -> None:
        self.store = store
        self.known = known  # this replica's keys
        self.inner = inner
        self.hash = store.key("keys")
        self.version_key = store.key("keys", "version")
        self.dirty = True  # push this replica's keys at the next sync
        self.version: str | None = None  # the store's version last pulled
        self._create = store.script(CREATE)
        self._revoke = store.script(REVOKE)
        self._merge = store.script(MERGE)
        self._warned: set[str] = set()

    async def save_key(self, key: StoredKey) -> None:
        keys, args = [self.hash, self.version_key], [key.id, encode_key(key), _new_version()]
        made = await self.store.run_script("key_create", self._create, keys, args)
        if not made:
            raise KeyConflict(f"a key named {key.id!r} exists already", param="name")
        if self.inner is not None:
            await self.inner.save_key(key)

    async def revoke_key(self, key_id: str, at: float) -> bool:
        keys, args = [self.hash, self.version_key], [key_id, repr(at), _new_version()]
        try:
            await self.store.run_script("key_revoke", self._revoke, keys, args)
        except StateUnavailable:
            self.dirty = True  # the sync pushes it once the store answers
        return await self.inner.revoke_key(key_id, at) if self.inner is not None else True

    async def keys(self) -> list[StoredKey]:
        return await self.inner.keys() if self.inner is not None else []

    async def sync(self, version: str | None) -> None:
        """Pull the store's keys if ``version`` (read before this call) moved or a push is due,
        and push what the store lacks. A push changes the version, so the next poll pulls again:
        whatever another replica wrote between this pull and this push is never skipped."""
        version = version or "0"  # no key was ever made through the store
        if version == self.version and not self.dirty:
            return
        raw: dict[str, str] = await self.store.run("key_sync", lambda c: c.hgetall(self.hash))  # type: ignore[arg-type,return-value]
        remote: dict[str, StoredKey] = {}
        for key_id, value in raw.items():
            try:
                remote[key_id] = decode_key(key_id, value)
            except (ValueError, KeyError, TypeError):
                self._warn_once(key_id, "API key %r in the shared store is not a key row; ignored")
        for row in remote.values():
            self._apply(row)
        behind = [
            row
            for row in self.known.stored()
            if (have := remote.get(row.id)) is None
            or (have.digest == row.digest and have.revoked_at is None and row.revoked_at is not None)
        ]
        if behind:
            keys = [self.hash, self.version_key]
            args = [_new_version(), *(part for row in behind for part in (row.id, encode_key(row)))]
            await self.store.run_script("key_sync", self._merge, keys, args)
        self.version, self.dirty = version, False

    def _apply(self, row: StoredKey) -> None:
        before = self.known.get(row.id)
        try:
            if self.known.apply(row):
                what = "added" if before is None else "revoked"
                logger.info("API key %r %s through the shared store", row.id, what)
        except ValueError:
            self._warn_once(
                row.id,
                "API key %r in the shared store is a different key from this replica's; kept this "
                "replica's (revoke one of them)",
            )

    def _warn_once(self, key_id: str, message: str) -> None:
        if key_id not in self._warned:
            self._warned.add(key_id)
            logger.warning(message, key_id)


__all__ = ["SharedKeyTable", "decode_key", "encode_key"]
