"""The Redis side of ingest: one stream, one consumer group, markers and idempotency keys.

Keys (``<p>`` is ``PERENNIAL_REDIS_PREFIX``):

=========================  ============================================================
``<p>:ingest``             the stream: entries ``{k: kind, d: json}`` (see store.ingest)
``<p>:ingest:dead``        entries the database refused as invalid data, with the error
``<p>:store``              the consumer group that persists the stream into the database
``<p>:cid:<completion>``   "this completion id was issued" (value: caller), TTL
``<p>:idem:<hash>``        an Idempotency-Key's record (JSON: request hash, created), TTL
=========================  ============================================================

An interaction is published as ``SET marker`` + ``XADD`` in one MULTI/EXEC, so a visible marker
implies the interaction is already in the stream. A feedback request is accepted by one Lua
script, atomically: replay check on its idempotency key, marker check of its completion ids
(each marker must name the caller: another caller's completion counts as missing), ``XADD``,
idempotency record. Concurrent accepts share round trips (``ScriptBatcher``): a
redis-py call costs ~120 us of CPU here, a pipelined one ~30 us. Consumers live in
``store/consumer.py``.

Both streams are capped (``XADD MAXLEN ~ maxlen``, ``PERENNIAL_INGEST_STREAM_MAXLEN``): Redis
memory stays bounded even if no consumer runs for long; past the cap the oldest entries are
trimmed, stored or not, so the cap should hold hours of traffic (``backlog`` reports the lag).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError, ResponseError

from store.ingest import INTERACTION, DeadLetter, Entry

DEFAULT_MAXLEN = 1_000_000

# KEYS: stream, [idempotency key], marker keys...
# ARGV: has_idem, idem_value, idem_ttl, data, maxlen, owner (the caller every marker must name)
_ACCEPT = """
local first = 2
if ARGV[1] == '1' then
  local previous = redis.call('GET', KEYS[2])
  if previous then return {'replay', previous} end
  first = 3
end
local missing = {}
for i = first, #KEYS do
  if redis.call('GET', KEYS[i]) ~= ARGV[6] then missing[#missing + 1] = KEYS[i] end
end
if #missing > 0 then return {'missing', table.concat(missing, ' ')} end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 'k', 'feedback', 'd', ARGV[4])
if ARGV[1] == '1' then redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3])) end
return {'ok', ''}
"""


def connect(url: str) -> Redis:
    """A Redis client for the request path: fail fast (one quick retry), so that an outage
    trips the fallback in milliseconds rather than seconds."""
    retry = Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1)
    return Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=3.0, retry=retry)


class ScriptBatcher:
    """Runs one Lua script for many concurrent callers, a pipeline of EVALSHAs per round trip.

    While a round trip is in flight, new calls queue up and go out together in the next one
    (group commit): one call alone waits for nothing extra; under load, batches form by
    themselves. Each caller gets its own result or exception.
    """

    def __init__(self, redis: Redis, source: str, max_batch: int = 256):
        self.redis = redis
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.max_batch = max_batch
        self._queue: list[tuple[list[str], list[Any], asyncio.Future]] = []
        self._flushing = False
        self.round_trips = 0

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                try:
                    results = await self._run(batch)
                except Exception as exc:  # connection lost: every caller of the batch learns it
                    results = [exc] * len(batch)
                for (_, _, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flushing = False

    async def _run(self, batch: list) -> list[Any]:
        results = await self._pipeline(batch)
        if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted: cache empty
            await self.redis.script_load(self.source)
            results = await self._pipeline(batch)
        return results

    async def _pipeline(self, batch: list) -> list[Any]:
        self.round_trips += 1
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)


@dataclass
class AcceptReply:
    """The Lua script's verdict: ``ok``, ``replay`` (value = stored JSON) or ``missing``."""

    status: str
    value: str = ""
    missing: list[str] = field(default_factory=list)


class IngestStream:
    """Names and the publishing operations of the ingest stream."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        completion_ttl_s: int,
        idempotency_ttl_s: int,
        maxlen: int = DEFAULT_MAXLEN,
    ):
        self.redis = redis
        self.maxlen = maxlen
        self.prefix = prefix
        self.stream = f"{prefix}:ingest"
        self.dead = f"{prefix}:ingest:dead"
        self.group = f"{prefix}:store"
        self.completion_ttl_s = completion_ttl_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self._accept = ScriptBatcher(redis, _ACCEPT)

    def marker(self, completion_id: str) -> str:
        return f"{self.prefix}:cid:{completion_id}"

    def idempotency(self, caller: str, key: str) -> str:
        # Hashed: client keys may be long or hold any characters.
        digest = hashlib.sha256(f"{caller}\0{key}".encode()).hexdigest()[:40]
        return f"{self.prefix}:idem:{digest}"

    async def ensure_group(self) -> None:
        """Create the stream and its consumer group if missing (from the stream's start)."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def publish_interactions(self, rows: list[dict]) -> None:
        """Marker + XADD per interaction, all in one MULTI/EXEC round trip."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for row in rows:
                pipe.set(self.marker(row["id"]), row["caller"], ex=self.completion_ttl_s)
                pipe.xadd(self.stream, Entry(INTERACTION, row).encode(), maxlen=self.maxlen, approximate=True)
            await pipe.execute()

    async def accept_feedback(
        self, entry: Entry, *, idem_key: str | None, idem_value: str, check_ids: list[str]
    ) -> AcceptReply:
        """Run the accept script for one feedback request.

        Args:
            entry: the feedback entry to XADD.
            idem_key: the Redis key of its Idempotency-Key (``idempotency()``), or None.
            idem_value: JSON stored under ``idem_key`` (request hash and response).
            check_ids: completion ids whose markers must name the items' caller (the rest are
                known already).

        Returns:
            ok (added), replay (the key was used before: its stored JSON), or missing (ids
            without a marker naming the caller; nothing was added).
        """
        keys = [self.stream] + ([idem_key] if idem_key else [])
        keys += [self.marker(cid) for cid in check_ids]
        args = [
            "1" if idem_key else "0",
            idem_value,
            self.idempotency_ttl_s,
            entry.encode()["d"],
            self.maxlen,
            entry.data["items"][0]["caller"],  # one request, one caller
        ]
        status, value = await self._accept(keys, args)
        status, value = status.decode(), value.decode()
        if status == "missing":
            cut = len(self.marker(""))
            return AcceptReply(status, missing=[key[cut:] for key in value.split(" ")])
        return AcceptReply(status, value)

    async def dead_letter(self, letters: list[DeadLetter]) -> None:
        """Entries the database refused, with the error, for a human (also in the database)."""
        for letter in letters:
            fields = {
                **letter.entry.encode(),
                "reason": letter.error[:500],
                "sqlstate": letter.sqlstate or "",
            }
            await self.redis.xadd(self.dead, fields, maxlen=self.maxlen, approximate=True)

    async def backlog(self) -> dict[str, int | None]:
        """Stream length, the group's lag (entries not yet delivered; None when Redis cannot
        tell) and pending (delivered, not yet acked), and the dead-letter stream's length."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.xinfo_groups(self.stream)
            pipe.xlen(self.dead)
            length, groups, dead = await pipe.execute(raise_on_error=False)
        group = (
            next((g for g in groups if _text(g.get("name")) == self.group), {})
            if isinstance(groups, list)
            else {}
        )
        return {
            "length": length if isinstance(length, int) else 0,
            "lag": group.get("lag"),
            "pending": group.get("pending"),
            "dead": dead if isinstance(dead, int) else 0,
        }


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def idempotency_value(request_hash: str, response: dict) -> str:
    return json.dumps({"hash": request_hash, "response": response}, separators=(",", ":"))
