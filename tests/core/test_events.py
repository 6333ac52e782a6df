"""EventBus: thread-safe publish into per-subscriber asyncio queues, coalescing, replay, close."""

from __future__ import annotations

import asyncio
import threading

from modelmgr.core.events import CLOSED, EventBus


def progress(model: str, percent: float, status: str = "downloading") -> dict:
    return {"model": model, "status": status, "progress": {"percent": percent}}


def test_publish_from_worker_threads_reaches_every_subscriber_in_order() -> None:
    async def scenario() -> None:
        bus = EventBus(queue_size=1000)
        bus.bind(asyncio.get_running_loop())
        queues = [bus.subscribe()[0] for _ in range(3)]
        workers = [
            threading.Thread(
                target=lambda n=n: [bus.publish("preload", {"n": n, "i": i}) for i in range(100)]
            )
            for n in range(4)
        ]
        for w in workers:
            w.start()
        await asyncio.to_thread(lambda: [w.join() for w in workers])
        for queue in queues:
            got = [await asyncio.wait_for(queue.get(), 10) for _ in range(400)]
            ids = [e.id for e in got]
            assert ids == sorted(ids) and len(set(ids)) == 400

    asyncio.run(scenario())


def test_full_queue_drops_stale_progress_but_never_terminal_events() -> None:
    async def scenario() -> None:
        bus = EventBus(queue_size=5)
        bus.bind(asyncio.get_running_loop())
        queue, _ = bus.subscribe()
        bus.publish("model_progress", progress("a", 0, "queued"))
        for i in range(1, 50):
            bus.publish("model_progress", progress("a", i))
        bus.publish("model_progress", progress("a", 100, "downloaded"))
        await asyncio.sleep(0)  # let call_soon_threadsafe callbacks run
        await asyncio.sleep(0)
        got = [queue.get_nowait() for _ in range(queue.qsize())]
        assert len(got) <= 5
        assert got[-1].data["status"] == "downloaded"
        percents = [e.data["progress"]["percent"] for e in got]
        assert percents == sorted(percents)
        assert not queue.lagging

    asyncio.run(scenario())


def test_one_models_flood_never_drops_another_models_event() -> None:
    async def scenario() -> None:
        bus = EventBus(queue_size=4)
        bus.bind(asyncio.get_running_loop())
        queue, _ = bus.subscribe()
        bus.publish("model_progress", progress("quiet", 10))
        for i in range(30):
            bus.publish("model_progress", progress("busy", i))
        await asyncio.sleep(0)
        got = [queue.get_nowait() for _ in range(queue.qsize())]
        assert [e.data["model"] for e in got].count("quiet") == 1
        assert got[-1].data["progress"]["percent"] == 29

    asyncio.run(scenario())


def test_queue_of_only_terminal_events_overflows_into_a_resync() -> None:
    async def scenario() -> None:
        bus = EventBus(queue_size=3)
        bus.bind(asyncio.get_running_loop())
        queue, _ = bus.subscribe()
        for i in range(5):
            bus.publish("model_progress", progress(f"m{i}", 100, "downloaded"))
        await asyncio.sleep(0)
        assert queue.lagging, "the client is told to take a fresh snapshot"

    asyncio.run(scenario())


def test_reconnect_with_last_event_id_replays_what_was_missed() -> None:
    bus = EventBus(replay=10)
    for i in range(8):
        bus.publish("preload", {"i": i})
    _, missed = bus.subscribe(last_event_id=5)
    assert missed is not None and [e.id for e in missed] == [6, 7, 8]
    _, up_to_date = bus.subscribe(last_event_id=8)
    assert up_to_date == []


def test_reconnect_beyond_the_replay_buffer_or_from_the_future_needs_a_snapshot() -> None:
    bus = EventBus(replay=4)
    for i in range(10):
        bus.publish("preload", {"i": i})
    assert bus.subscribe(last_event_id=2)[1] is None
    assert bus.subscribe(last_event_id=99)[1] is None
    assert bus.subscribe(last_event_id=6)[1] is not None


def test_unsubscribe_and_close() -> None:
    async def scenario() -> None:
        bus = EventBus()
        bus.bind(asyncio.get_running_loop())
        a, _ = bus.subscribe()
        b, _ = bus.subscribe()
        assert bus.subscriber_count == 2
        bus.unsubscribe(a)
        assert bus.subscriber_count == 1
        bus.close()
        assert await asyncio.wait_for(b.get(), 5) is CLOSED
        late, _ = bus.subscribe()
        assert late.get_nowait() is CLOSED, "subscribing after close ends at once"

    asyncio.run(scenario())


def test_publish_without_a_loop_only_fills_the_replay_buffer() -> None:
    bus = EventBus()
    event = bus.publish("preload", {"state": "idle"})
    assert event.id == 1 and bus.last_id == 1


def test_each_event_is_serialized_once_whatever_the_number_of_subscribers(monkeypatch) -> None:
    import json

    from modelmgr.core import events

    calls = []
    real_dumps = json.dumps
    monkeypatch.setattr(events.json, "dumps", lambda obj, **kw: calls.append(1) or real_dumps(obj, **kw))

    async def scenario() -> None:
        bus = EventBus(queue_size=100)
        bus.bind(asyncio.get_running_loop())
        queues = [bus.subscribe()[0] for _ in range(50)]
        for i in range(10):
            bus.publish("model_progress", progress("a", i))
        await asyncio.sleep(0)
        frames = {q.get_nowait().sse for q in queues}
        assert len(frames) == 1, "every subscriber gets the same bytes object's content"
        (frame,) = frames
        assert frame.startswith(b"id: 1\r\nevent: model_progress\r\ndata: {")
        assert frame.endswith(b"\r\n\r\n")

    asyncio.run(scenario())
    assert len(calls) == 10


def test_a_storm_of_connecting_clients_shares_one_snapshot(live_server, monkeypatch) -> None:
    import httpx

    services = live_server.services
    built = []
    real = services.snapshot

    def counting() -> dict:
        built.append(1)
        return real()

    monkeypatch.setattr(services, "snapshot", counting)

    async def scenario() -> list[bytes]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=100)) as client:

            async def first_frame() -> bytes:
                async with client.stream("GET", f"{live_server.url}/api/events") as response:
                    lines = []
                    async for line in response.aiter_lines():
                        if not line:
                            return "\n".join(lines).encode()
                        lines.append(line)
                    return b""

            return await asyncio.wait_for(asyncio.gather(*(first_frame() for _ in range(40))), 60)

    frames = asyncio.run(scenario())
    assert all(f.startswith(b"id: ") and b"event: snapshot" in f for f in frames)
    assert len(set(frames)) <= len(built) < 40, "clients connecting together share a snapshot"
