"""Per-key limits counted in the shared store, so they hold across every replica.

Each API key has two Redis hashes (``{prefix}:usage:{<id>}:w`` and ``...:t``):

- the *window*: requests and tokens per second of Redis's own clock, fields ``r<second>`` and
  ``t<second>``. A second's bucket counts until its end is a minute old, so an amount leaves
  the window up to one second later than in-process (never earlier: a limit is never
  exceeded in any 60 s). Old fields are deleted as they are read, and the hash expires
  62 s after its last write, so idle keys cost nothing.
- the *totals*: requests, tokens and spending since the store was created (no expiry; the
  spending is the budget). At start each replica raises them to what its request log says
  (``max``, not a sum), so a store that lost its data is seeded again.

Admission is one Lua script (:data:`ADMIT`): read the window, drop what left it, check the
budget, rpm and tpm, and count the request only if all pass, atomically, so two replicas can
never both take the last request of a minute. A sliding window of one-second buckets rather than
``INCR``+``EXPIRE`` per minute: a fixed minute lets a key through twice its rpm across a
boundary, and the buckets keep the in-process semantics (and ``x-ratelimit-reset-*``) within
a second. It costs one round trip per admitted request; the tokens and cost of an answer are
charged after it (:data:`CHARGE`) without the request waiting for the store.

The script hands back the key's whole window, which becomes this replica's copy of the key's
usage: the ``x-ratelimit-*`` headers, ``retry-after`` and ``GET /admin/keys`` read it. When the
store does not answer, ``state.on_error`` decides: ``open`` admits by that copy (per-process
limits from the last counts seen, as without a store), ``closed`` refuses keyed requests with
503 ``state_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from backends.errors import SmallfleetError
from fleet.config import DEFAULT_STATE_ON_ERROR, StateOnError
from gateway.errors import StateUnavailable
from gateway.keys import ApiKey, KeyStore
from gateway.limits import WINDOW_S, KeyUsage, Limiter, Refusal
from gateway.metrics import GatewayMetrics
from gateway.request_log import RequestRecord
from gateway.shared.store import RETRY_AFTER_S, SharedStore

logger = logging.getLogger("smallfleet.state")
DRAIN_S = 2.0

# KEYS: window, totals. ARGV: count (1 admits and counts, 0 looks), rpm, tpm (0: none),
# budget ('' none), window seconds. Returns {refusal or '', now, requests, tokens, spent, fields}.
ADMIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window = tonumber(ARGV[5])
local flat = redis.call('HGETALL', KEYS[1])
local live, stale, requests, tokens = {}, {}, 0, 0
for i = 1, #flat, 2 do
  local amount = tonumber(flat[i + 1])
  if tonumber(string.sub(flat[i], 2)) + 1 + window <= now then
    stale[#stale + 1] = flat[i]
  else
    live[#live + 1] = flat[i]
    live[#live + 1] = flat[i + 1]
    if string.sub(flat[i], 1, 1) == 'r' then requests = requests + amount else tokens = tokens + amount end
  end
end
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
local totals = redis.call('HMGET', KEYS[2], 'requests', 'tokens', 'spent')
local spent = tonumber(totals[3] or '0')
local rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local refusal = ''
if ARGV[4] ~= '' and spent >= tonumber(ARGV[4]) then refusal = 'budget'
elseif rpm > 0 and requests >= rpm then refusal = 'rpm'
elseif tpm > 0 and tokens >= tpm then refusal = 'tpm' end
if refusal == '' and ARGV[1] == '1' then
  local field = 'r' .. math.floor(now)
  live[#live + 1] = field
  live[#live + 1] = tostring(redis.call('HINCRBY', KEYS[1], field, 1))
  redis.call('EXPIRE', KEYS[1], window + 2)
  totals[1] = redis.call('HINCRBY', KEYS[2], 'requests', 1)
end
return {refusal, tostring(now), tostring(totals[1] or 0), tostring(totals[2] or 0), tostring(spent), live}
"""

# KEYS: window, totals. ARGV: tokens, cost, window seconds.
CHARGE = """
local tokens = tonumber(ARGV[1])
if tokens > 0 then
  redis.call('HINCRBY', KEYS[1], 't' .. redis.call('TIME')[1], tokens)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]) + 2)
  redis.call('HINCRBY', KEYS[2], 'tokens', tokens)
end
redis.call('HINCRBYFLOAT', KEYS[2], 'spent', ARGV[2])
"""

# KEYS: totals. ARGV: tokens, cost from a request log. Raises the totals to them, never lowers.
SEED = """
if tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0') < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'tokens', ARGV[1])
end
if tonumber(redis.call('HGET', KEYS[1], 'spent') or '0') < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'spent', ARGV[2])
end
"""


def usage_from_reply(reply: list[Any]) -> tuple[str, float, KeyUsage]:
    """The script's answer as (refusal or '', the store's time, the key's usage)."""
    refusal, now, requests, tokens, spent, flat = reply
    usage = KeyUsage(total_requests=int(requests), total_tokens=int(tokens), spent=float(spent))
    buckets = dict(zip(flat[::2], flat[1::2], strict=True))  # a later value of a field wins
    for name, amount in sorted(buckets.items(), key=lambda item: int(item[0][1:])):
        window = usage.requests if name[0] == "r" else usage.tokens
        window.add(int(name[1:]) + 1.0, int(amount))  # a bucket leaves at its end + a minute
    return str(refusal), float(now), usage


class SharedLimiter(Limiter):
    """A :class:`~gateway.limits.Limiter` whose counts live in the shared store."""

    def __init__(
        self,
        keys: KeyStore,
        metrics: GatewayMetrics,
        store: SharedStore,
        *,
        on_error: StateOnError = DEFAULT_STATE_ON_ERROR,
    ) -> None:
        super().__init__(keys, metrics, clock=self._store_clock)
        self.store = store
        self.on_error = on_error
        self._skew = 0.0  # the store's clock minus ours
        self._admit = store.script(ADMIT)
        self._charge = store.script(CHARGE)
        self._seed = store.script(SEED)
        self._seeds: dict[str, tuple[int, float]] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def _store_clock(self) -> float:
        return time.time() + self._skew

    def _keys(self, key_id: str) -> list[str]:
        tag = "{" + key_id + "}"  # one hash slot for both, should the store be a cluster
        return [self.store.key("usage", tag, "w"), self.store.key("usage", tag, "t")]

    async def _usage_in_store(self, key: ApiKey, count: bool, operation: str) -> str:
        limits = self.keys.limits_of(key)
        budget = "" if limits.budget is None else repr(limits.budget)
        args = ["1" if count else "0", limits.rpm or 0, limits.tpm or 0, budget, int(WINDOW_S)]
        reply = await self.store.run_script(operation, self._admit, self._keys(key.id), args)
        refusal, now, usage = usage_from_reply(reply)
        self._skew = now - time.time()
        self._usage[key.id] = usage
        return refusal

    async def admit(self, key: ApiKey) -> SmallfleetError | None:
        try:
            refusal = await self._usage_in_store(key, True, "admit")
        except StateUnavailable as exc:
            if self.on_error == "open":
                return await super().admit(key)  # by this replica's copy of the key's usage
            exc.retry_after = RETRY_AFTER_S
            self.metrics.observe_key_rejection(key.id, exc.code or exc.error_type)
            return exc
        if refusal:
            reason: Refusal = "budget" if refusal == "budget" else "rpm" if refusal == "rpm" else "tpm"
            return self.refuse(key, reason)
        return None

    async def refresh(self, key: ApiKey) -> None:
        with contextlib.suppress(StateUnavailable):  # then report this replica's copy
            await self._usage_in_store(key, False, "usage")

    def charge(self, record: RequestRecord) -> None:
        super().charge(record)  # this replica's copy and the metrics, at once
        if record.api_key_id is None:
            return
        tokens = record.prompt_tokens + record.completion_tokens
        charging = self._charge_store(record.api_key_id, tokens, record.cost)
        task = asyncio.get_running_loop().create_task(charging)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _charge_store(self, key_id: str, tokens: int, cost: float) -> None:
        args: list[str | int | float] = [tokens, repr(cost), int(WINDOW_S)]
        with contextlib.suppress(StateUnavailable):  # counted and logged; this replica's copy has it
            await self.store.run_script("charge", self._charge, self._keys(key_id), args)

    def seed(self, spend: Mapping[str, tuple[int, float]]) -> None:
        super().seed(spend)
        self._seeds.update(spend)

    async def start(self) -> None:
        """Raise the store's totals to what this replica's request log says (see the module doc)."""
        for key_id, (tokens, cost) in self._seeds.items():
            try:
                await self.store.run_script("seed", self._seed, self._keys(key_id)[1:], [tokens, repr(cost)])
            except StateUnavailable:
                return

    async def aclose(self) -> None:
        """Wait (a little) for the charges still on their way to the store."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=DRAIN_S)
