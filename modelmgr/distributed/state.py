"""The state web processes and workers share through Redis.

Keys (all under ``modelmgr:``):

* ``job:<id>``     a hash: ``record`` (the job as JSON, as ``job.json`` holds it), ``status``,
                   ``cancel`` ("1" once someone asked), ``attempt`` (how many workers started it).
* ``jobs``         a sorted set of job ids by creation time: the index for listings.
* ``queued``       a sorted set of the ids of jobs whose record says ``queued``, by creation time:
                   queue positions without reading records. ``save`` and ``remove`` keep it in
                   step with the records (same transaction); ``ensure_queue_index`` rebuilds it
                   from them where it is missing (Redis data from before it existed).
* ``claim:<id>``   the worker running the job, with a short TTL its heartbeat renews. A second
                   delivery of the same job (a re-queued message) finds the claim and does not run
                   it twice; once the owner is gone the claim expires and the delivery takes over.
* ``claimed``      a set of the ids of jobs some worker claimed and has not released: where the
                   web processes look for jobs whose worker died (their claim expired).
* ``routed``       a set of the ids of queued jobs sent to a model queue (``model.<id>``) and not
                   yet claimed: where the web processes look for jobs no live worker will take.
* ``rescued:<id>:<tag>`` set (NX) by the one web process that re-queues a job (per attempt).
* ``worker:<name>`` a worker's heartbeat (device, loaded models, current job), with a TTL.
* ``events``       the pub/sub channel: ``{"name", "data", "origin"}`` envelopes.

Every call has a deadline (``redis_timeout_s``); a Redis that cannot be reached is
``QueueUnavailable`` (503), never a hang.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from modelmgr.core.errors import QueueUnavailable
from modelmgr.core.settings import Settings

PREFIX = "modelmgr:"
CHANNEL = PREFIX + "events"
QUEUED = PREFIX + "queued"

# Compare-and-renew / compare-and-delete: only the owner touches its claim.
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# The queued index, a chunk at a time (KEYS[1] the index, KEYS[2..] the jobs' hashes), atomic with
# respect to ``save``: add the jobs (ARGV: id, created_at, ...) whose record says queued now, or
# drop the members (ARGV: ids) whose record does not (gone, or written by a version without it).
_INDEX = """local n = 0
for i = 2, #KEYS do
  if redis.call('hget', KEYS[i], 'status') == 'queued' then
    redis.call('zadd', KEYS[1], ARGV[2 * i - 2], ARGV[2 * i - 3]); n = n + 1
  end
end
return n"""
_PRUNE = """local n = 0
for i = 2, #KEYS do
  if redis.call('hget', KEYS[i], 'status') ~= 'queued' then
    n = n + redis.call('zrem', KEYS[1], ARGV[i - 1])
  end
end
return n"""
_CHUNK = 500


def connect(settings: Settings) -> redis.Redis:
    assert settings.redis_url, "distributed mode needs a Redis URL"
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        decode_responses=True,
    )


class SharedState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.redis_url
        self.redis = connect(settings)  # redis-py's pool is thread-safe

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise QueueUnavailable(
                f"the job queue (Redis at {_safe_url(self.url)}) cannot be reached: {exc}"
            ) from exc

    def ping(self) -> None:
        with self._guard():
            self.redis.ping()

    # --- job records ---
    def save(self, record: dict[str, Any]) -> None:
        with self._guard():
            pipe = self.redis.pipeline()
            key = _job(record["id"])
            pipe.hset(key, mapping={"record": json.dumps(record), "status": record["status"]})
            pipe.zadd(PREFIX + "jobs", {record["id"]: record["created_at"]})
            if record["status"] == "queued":  # submitted, or re-queued after its worker was lost
                pipe.zadd(QUEUED, {record["id"]: record["created_at"]})
            else:  # a worker runs it (its first stage), or it finished
                pipe.zrem(QUEUED, record["id"])
            pipe.execute()

    def load(self, job_id: str) -> dict[str, Any] | None:
        with self._guard():
            values = self.redis.hmget(_job(job_id), ["record", "attempt"])
        return _decode(*values)

    def load_many(self, job_ids: list[str]) -> list[dict[str, Any]]:
        with self._guard():
            pipe = self.redis.pipeline()
            for job_id in job_ids:
                pipe.hmget(_job(job_id), ["record", "attempt"])
            rows = pipe.execute()
        return [r for r in (_decode(*row) for row in rows) if r is not None]

    def recent(self, limit: int) -> list[str]:
        """Job ids, newest first."""
        with self._guard():
            return list(self.redis.zrevrange(PREFIX + "jobs", 0, max(0, limit - 1)))

    def created_before(self, cutoff: float, limit: int = 500) -> list[str]:
        """Ids of jobs created before ``cutoff`` (candidates for the retention sweep)."""
        with self._guard():
            return list(self.redis.zrangebyscore(PREFIX + "jobs", "-inf", cutoff, start=0, num=limit))

    def remove(self, job_id: str) -> None:
        with self._guard():
            pipe = self.redis.pipeline()
            pipe.delete(_job(job_id), PREFIX + f"claim:{job_id}")
            pipe.zrem(PREFIX + "jobs", job_id)
            pipe.zrem(QUEUED, job_id)
            pipe.srem(PREFIX + "claimed", job_id)
            pipe.srem(PREFIX + "routed", job_id)
            pipe.execute()

    # --- the queued index ---
    def queued(self) -> list[str]:
        """Ids of the queued jobs (all queues together), oldest first: no record is read."""
        with self._guard():
            return list(self.redis.zrange(QUEUED, 0, -1))

    def ensure_queue_index(self) -> int | None:
        """Rebuild the queued index from the job records if it is missing.

        Returns how many queued jobs it found, or None when the index was there. Where no job is
        queued the index does not exist either, and this reads every job's status once (at a web
        process's start). Two processes rebuilding at once add the same members.
        """
        with self._guard():
            if self.redis.exists(QUEUED):
                return None
            found = 0
            chunk: list[tuple[str, float]] = []
            for item in self.redis.zscan_iter(PREFIX + "jobs", count=_CHUNK):
                chunk.append(item)
                if len(chunk) >= _CHUNK:
                    found += self._index(chunk)
                    chunk = []
            return found + (self._index(chunk) if chunk else 0)

    def _index(self, chunk: list[tuple[str, float]]) -> int:
        keys = [QUEUED, *(_job(job_id) for job_id, _ in chunk)]
        args = [value for job_id, created in chunk for value in (job_id, repr(created))]
        return int(self.redis.eval(_INDEX, len(keys), *keys, *args))

    def prune_queue_index(self) -> int:
        """Drop members whose record is gone or no longer queued (the retention sweep's upkeep)."""
        with self._guard():
            removed = 0
            ids = self.queued()
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                keys = [QUEUED, *(_job(job_id) for job_id in chunk)]
                removed += int(self.redis.eval(_PRUNE, len(keys), *keys, *chunk))
            return removed

    def next_attempt(self, job_id: str) -> int:
        with self._guard():
            return int(self.redis.hincrby(_job(job_id), "attempt", 1))

    # --- cancel ---
    def request_cancel(self, job_id: str) -> None:
        with self._guard():
            self.redis.hset(_job(job_id), "cancel", "1")

    def cancel_requested(self, job_id: str) -> bool:
        with self._guard():
            return self.redis.hget(_job(job_id), "cancel") == "1"

    # --- claims: at most one worker runs a job ---
    def claim(self, job_id: str, worker: str, ttl_s: int) -> bool:
        with self._guard():
            if not self.redis.set(PREFIX + f"claim:{job_id}", worker, nx=True, ex=ttl_s):
                return False
            pipe = self.redis.pipeline()
            pipe.sadd(PREFIX + "claimed", job_id)
            pipe.srem(PREFIX + "routed", job_id)
            pipe.execute()
            return True

    def claim_owner(self, job_id: str) -> str | None:
        with self._guard():
            return self.redis.get(PREFIX + f"claim:{job_id}")

    def renew_claim(self, job_id: str, worker: str, ttl_s: int) -> bool:
        with self._guard():
            return bool(self.redis.eval(_RENEW, 1, PREFIX + f"claim:{job_id}", worker, ttl_s))

    def release_claim(self, job_id: str, worker: str) -> None:
        with self._guard():
            if self.redis.eval(_RELEASE, 1, PREFIX + f"claim:{job_id}", worker):
                self.redis.srem(PREFIX + "claimed", job_id)

    def unclaimed(self) -> list[str]:
        """Jobs in ``claimed`` whose claim has expired: their worker stopped renewing it."""
        with self._guard():
            ids = sorted(self.redis.smembers(PREFIX + "claimed"))
            owners = self.redis.mget([PREFIX + f"claim:{i}" for i in ids]) if ids else []
        return [job_id for job_id, owner in zip(ids, owners, strict=True) if owner is None]

    def forget_claimed(self, job_id: str) -> None:
        with self._guard():
            pipe = self.redis.pipeline()
            pipe.srem(PREFIX + "claimed", job_id)
            pipe.srem(PREFIX + "routed", job_id)
            pipe.execute()

    def note_routed(self, job_id: str) -> None:
        with self._guard():
            self.redis.sadd(PREFIX + "routed", job_id)

    def routed(self) -> list[str]:
        with self._guard():
            return sorted(self.redis.smembers(PREFIX + "routed"))

    def take_rescue(self, job_id: str, tag: str, ttl_s: int = 24 * 3600) -> bool:
        """True for exactly one caller per (job, tag): the web process that re-queues it."""
        with self._guard():
            return bool(self.redis.set(PREFIX + f"rescued:{job_id}:{tag}", "1", nx=True, ex=ttl_s))

    # --- workers ---
    def heartbeat(self, name: str, info: dict[str, Any], ttl_s: int) -> None:
        with self._guard():
            self.redis.set(PREFIX + f"worker:{name}", json.dumps(info), ex=ttl_s)

    def forget_worker(self, name: str) -> None:
        with self._guard():
            self.redis.delete(PREFIX + f"worker:{name}")

    def workers(self) -> list[dict[str, Any]]:
        """Live workers (their heartbeat has not expired), by name."""
        with self._guard():
            keys = sorted(self.redis.scan_iter(match=PREFIX + "worker:*", count=200))
            values = self.redis.mget(keys) if keys else []
        out = []
        for value in values:
            if value:
                info = json.loads(value)
                info["heartbeat_age_s"] = round(max(0.0, time.time() - info.get("heartbeat_at", 0)), 1)
                out.append(info)
        return out

    # --- events ---
    def publish(self, name: str, data: dict[str, Any], origin: str) -> None:
        with self._guard():
            self.redis.publish(CHANNEL, json.dumps({"name": name, "data": data, "origin": origin}))


_FINISHED = frozenset({"done", "error", "cancelled"})  # asr.job_record.FINISHED, without the import


def _job(job_id: str) -> str:
    return PREFIX + f"job:{job_id}"


def _decode(record: str | None, attempt: str | None) -> dict[str, Any] | None:
    """The record, with ``attempt`` from its counter (which a worker bumps when it starts the job).

    Between that bump and the worker's first save the record still names the previous worker:
    a retried job would read "attempt 2, on the worker that was lost". Until the new worker's
    record arrives it names none.
    """
    if not record:
        return None
    data = json.loads(record)
    counter = int(attempt or 0)
    if counter > int(data.get("attempt") or 0) and data.get("status") not in _FINISHED:
        data["worker"] = None
    data["attempt"] = counter
    return data


def _safe_url(url: str | None) -> str:
    """The URL without a password (never log a secret)."""
    if not url:
        return "?"
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}"
