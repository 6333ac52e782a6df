"""The queued-jobs index (``modelmgr:queued``): queue positions without reading job records.

A real redis-server (the cluster tests' helper) and a web process's RemoteTranscriptionManager
built in this process, with no worker: submitted jobs stay queued (Celery's messages wait in the
broker). What a worker does to a job's record (claim it, report its first stage, finish it) is
done here with the same SharedState calls the worker makes.
"""

from __future__ import annotations

import math
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from modelmgr.asr.job_record import JobOptions
from modelmgr.core.settings import Settings
from modelmgr.distributed.jobs import RemoteTranscriptionManager
from modelmgr.distributed.state import PREFIX, QUEUED
from modelmgr.services import Services
from tests.distributed.test_distributed import RedisServer
from tests.fresh import free_port

RECORD_READS = ("hget", "hmget", "hgetall")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


def web_settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        hf_home=tmp_path / "hf",
        hf_hub_cache=None,
        hf_token=None,
        offline=True,
        torch_home=tmp_path / "torch",
        data_dir=tmp_path / "shared",
        redis_url=url,
        redis_timeout_s=5.0,
        fetch_sizes=False,
        min_free_bytes=0,
        default_languages=[],
    )


@pytest.fixture
def web(tmp_path: Path, redis_server: RedisServer, client: redis.Redis) -> Iterator[Services]:
    services = Services.build(web_settings(tmp_path, redis_server.url))
    yield services
    services.shutdown()


def manager_of(services: Services) -> RemoteTranscriptionManager:
    manager = services.transcriptions
    assert isinstance(manager, RemoteTranscriptionManager)
    return manager


def submit(manager: RemoteTranscriptionManager, tmp_path: Path, model: str = "tiny") -> str:
    """A real submit (checks, upload stored, record saved, Celery task sent) of 0.1 s of a tone."""
    upload = tmp_path / f"upload-{len(list(tmp_path.glob('upload-*')))}.wav"
    with wave.open(str(upload), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        tone = (int(8000 * math.sin(i / 8)) for i in range(1600))
        out.writeframes(b"".join(v.to_bytes(2, "little", signed=True) for v in tone))
    return manager.submit(upload, "tone.wav", JobOptions(model=model)).id


def positions(manager: RemoteTranscriptionManager) -> dict[str, int]:
    manager._positions = (0.0, {})  # past the listing cache: what Redis says now
    return manager.queue_positions()


def listed(manager: RemoteTranscriptionManager) -> dict[str, int | None]:
    """Queue positions as a listing (the UI, SSE snapshots) shows them."""
    manager._positions = (0.0, {})
    return {job["id"]: job["queue_position"] for job in manager.snapshot(50)}


def worker_starts(manager: RemoteTranscriptionManager, job_id: str, worker: str = "w1") -> None:
    """What a worker does to a job it takes: claim it, then record its first stage."""
    state = manager.state
    assert state.claim(job_id, worker, 30)
    record = state.load(job_id)
    assert record is not None
    state.next_attempt(job_id)
    state.save(record | {"status": "loading", "worker": worker, "attempt": 1})


def test_positions_follow_submit_order_across_queues(web: Services, tmp_path: Path) -> None:
    manager = manager_of(web)
    # An idle worker with tiny loaded: tiny's jobs go to its model queue, base's to default.
    info = {"name": "w1", "current_job": None, "loaded": ["tiny"], "queues": ["default", "model.tiny"]}
    manager.state.heartbeat("w1", info, 30)
    ids = [submit(manager, tmp_path, model) for model in ("tiny", "base", "tiny", "base")]
    queues = [manager.get(job_id).queue for job_id in ids]  # type: ignore[attr-defined]
    assert queues == ["model.tiny", "default", "model.tiny", "default"]

    expected = {job_id: i + 1 for i, job_id in enumerate(ids)}
    assert manager.queue_positions() == expected  # right after the submits, cache or not
    assert positions(manager) == expected
    assert listed(manager) == expected
    assert manager.state.queued() == ids


def test_a_job_that_leaves_the_queue_leaves_the_index_and_the_others_move_up(
    web: Services, tmp_path: Path, client: redis.Redis
) -> None:
    manager = manager_of(web)
    claimed, cancelled, finished, deleted, last = ids = [submit(manager, tmp_path) for _ in range(5)]
    assert positions(manager) == {job_id: i + 1 for i, job_id in enumerate(ids)}

    worker_starts(manager, claimed)
    assert positions(manager) == {cancelled: 1, finished: 2, deleted: 3, last: 4}

    assert manager.cancel(cancelled).status == "cancelled"
    assert positions(manager) == {finished: 1, deleted: 2, last: 3}

    record = manager.state.load(finished)
    manager.state.save(record | {"status": "done", "finished_at": record["created_at"] + 1})
    assert positions(manager) == {deleted: 1, last: 2}

    assert manager.delete(deleted) == "deleted"
    assert positions(manager) == {last: 1}
    listing = listed(manager)
    assert listing[last] == 1 and listing[claimed] is None and deleted not in listing

    # A record gone some other way (not through remove): the sweep drops its member.
    client.delete(PREFIX + f"job:{last}")
    assert manager.state.queued() == [last]
    manager._sweep()
    assert positions(manager) == {}
    assert not client.exists(QUEUED)


def test_a_job_re_queued_after_its_worker_was_lost_is_back_in_its_place(
    web: Services, tmp_path: Path, client: redis.Redis
) -> None:
    manager = manager_of(web)
    first, second = submit(manager, tmp_path), submit(manager, tmp_path)
    worker_starts(manager, first, worker="gone")
    manager.state.save(manager.state.load(first) | {"status": "transcribing", "worker": "gone"})
    assert positions(manager) == {second: 1}

    # The worker died: its claim expires (here: at once) and no heartbeat names it.
    client.delete(PREFIX + f"claim:{first}")
    manager.rescue.grace_s = 0.0
    sent: list[Any] = []
    manager.control.send = lambda task, args, queue: sent.append((task, args, queue))  # type: ignore[method-assign]
    manager.rescue.run()
    assert [args for _, args, _ in sent] == [[first]]
    assert manager.get(first).status == "queued"
    assert positions(manager) == {first: 1, second: 2}  # by submission, as before it was taken


def test_the_index_is_rebuilt_from_the_records_when_it_is_missing(
    web: Services, tmp_path: Path, redis_server: RedisServer, client: redis.Redis
) -> None:
    manager = manager_of(web)
    ids = [submit(manager, tmp_path) for _ in range(4)]
    worker_starts(manager, ids[1])  # running: not queued
    manager.cancel(ids[2])  # finished: not queued
    queued = [ids[0], ids[3]]
    assert manager.state.queued() == queued

    # Redis data from a version without the index: job records, no ``queued`` key.
    client.delete(QUEUED)
    assert positions(manager) == {}
    other = Services.build(web_settings(tmp_path / "second", redis_server.url))
    try:
        second = manager_of(other)
        second.start()  # a web process starting rebuilds it
        assert positions(second) == {ids[0]: 1, ids[3]: 2}
        assert positions(manager) == {ids[0]: 1, ids[3]: 2}  # shared by every web process
    finally:
        other.shutdown()

    # Rebuilding again (a second web process at once) changes nothing; with the index there it is a no-op.
    client.delete(QUEUED)
    assert manager.state.ensure_queue_index() == 2
    assert manager.state.ensure_queue_index() is None
    assert manager.state.queued() == queued
    # More records than one rebuild chunk.
    record = manager.state.load(ids[0])
    for i in range(1200):
        manager.state.save(record | {"id": f"{i:032x}", "created_at": record["created_at"] + 10 + i})
    client.delete(QUEUED)
    assert manager.state.ensure_queue_index() == 1202
    assert manager.state.queued() == [*queued, *(f"{i:032x}" for i in range(1200))]


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in RECORD_READS}


def test_a_listing_s_queue_positions_read_no_job_record(
    web: Services, tmp_path: Path, client: redis.Redis
) -> None:
    manager = manager_of(web)
    record = manager.state.load(submit(manager, tmp_path))
    assert record is not None
    for i in range(499):  # 500 queued jobs in all, each a valid record (copies of a real one)
        manager.state.save(record | {"id": f"{i:032x}", "created_at": record["created_at"] + 1 + i})

    manager._positions = (0.0, {})
    before = command_calls(client)
    got = manager.queue_positions()
    after = command_calls(client)
    assert len(got) == 500 and got[record["id"]] == 1 and got[f"{498:032x}"] == 500
    assert after == before, f"queue_positions() read job records: {before} -> {after}"
