"""take_batches: what a batch holds, which events are acknowledged, and when (no broker).

The stream, app and consumer are small fakes with the attributes take_batches reads from
faust-streaming's (0.15.3, pinned); the events are real :class:`ProcessedEvent` objects over
real Faust messages, so acknowledgement goes through Faust's own code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import EventT
from faust.types.tuples import ConsumerMessage

from huracan.agents.faust_fixes.batching import ProcessedEvent, take_batches

TOPIC = "t.market-data"


@dataclass
class FakeFlowControl:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class FakeConsumer:
    """What Faust's ``Consumer.ack`` does for a tracked message, without offsets."""

    _unacked_messages: set[Any] = field(default_factory=set)
    acked: list[int] = field(default_factory=list)

    def ack(self, message: ConsumerMessage) -> bool:
        message.acked = True
        self._unacked_messages.discard(message)
        self.acked.append(message.offset)
        return True


@dataclass
class FakeTopics:
    _acking_topics: set[str] = field(default_factory=lambda: {TOPIC})


@dataclass
class FakeApp:
    flow_control: FakeFlowControl = field(default_factory=FakeFlowControl)
    consumer: FakeConsumer = field(default_factory=FakeConsumer)
    topics: FakeTopics = field(default_factory=FakeTopics)
    consumer_generation_id: int = 1


class FakeChannel:
    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self.queue = queue

    def __aiter__(self) -> FakeChannel:
        return self

    async def __anext__(self) -> Any:  # never called: take_batches reads the queue
        raise AssertionError("take_batches must not iterate the channel")


class FakeStream:
    def __init__(self, app: FakeApp, queue: asyncio.Queue[Any]) -> None:
        self.app = app
        self.channel = FakeChannel(queue)
        self.stopped = False
        self.stop_iterations = 0

    @property
    def should_stop(self) -> bool:
        return self.stopped

    async def maybe_start(self) -> bool:
        return False

    def _channel_stop_iteration(self, channel: Any) -> None:
        self.stop_iterations += 1


def event(app: FakeApp, offset: int, *, generation: int = 1) -> ProcessedEvent:
    message = ConsumerMessage(
        TOPIC, 0, offset, 0.0, 0, None, b"BTC", b"v", None, generation_id=generation
    )
    message.refcount = 1
    return ProcessedEvent(app, b"BTC", b"v", None, message)  # type: ignore[arg-type]


async def queued(app: FakeApp, *events: Any) -> FakeStream:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for e in events:
        queue.put_nowait(e)
    return FakeStream(app, queue)


async def take(stream: FakeStream, max_: int = 500, within: float = 0.01) -> Any:
    return take_batches(stream, max_, within)  # type: ignore[arg-type]


def offsets(batch: Sequence[EventT[Any]]) -> list[int]:
    return [e.message.offset for e in batch]


async def test_take_batches_when_events_are_buffered_then_one_batch_holds_them_all() -> None:
    # arrange
    app = FakeApp()
    stream = await queued(app, *(event(app, o) for o in range(5)))
    batches: AsyncIterator[Sequence[EventT[Any]]] = await take(stream)
    # act
    batch = await anext(batches)
    # assert
    assert offsets(batch) == [0, 1, 2, 3, 4]
    await batches.aclose()


async def test_take_batches_when_more_than_max_buffered_then_batches_of_max() -> None:
    app = FakeApp()
    stream = await queued(app, *(event(app, o) for o in range(7)))
    batches = await take(stream, max_=3)
    first, second, third = [await anext(batches) for _ in range(3)]
    assert (offsets(first), offsets(second), offsets(third)) == ([0, 1, 2], [3, 4, 5], [6])
    await batches.aclose()


async def test_take_batches_when_buffer_empty_then_waits_for_the_first_event() -> None:
    app = FakeApp()
    stream = await queued(app)
    batches = await take(stream, within=0.005)
    pending = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.03)  # several empty waits pass
    assert not pending.done()
    stream.channel.queue.put_nowait(event(app, 9))
    batch = await asyncio.wait_for(pending, 1.0)
    assert offsets(batch) == [9]
    await batches.aclose()


async def test_take_batches_when_agent_asks_for_next_batch_then_previous_is_acked() -> None:
    app = FakeApp()
    events = [event(app, o) for o in range(3)]
    stream = await queued(app, *events[:2])
    batches = await take(stream)
    first = await anext(batches)
    # tracked as unacknowledged while the agent works on the batch
    assert {e.message for e in first} == app.consumer._unacked_messages
    assert app.consumer.acked == []
    stream.channel.queue.put_nowait(events[2])
    await anext(batches)
    assert app.consumer.acked == [0, 1]
    assert all(e.processed for e in first)
    assert app.consumer._unacked_messages == {events[2].message}
    await batches.aclose()


async def test_take_batches_when_agent_fails_in_batch_then_nothing_is_acked() -> None:
    app = FakeApp()
    stream = await queued(app, *(event(app, o) for o in range(3)))

    async def agent() -> None:
        async for _ in await take(stream):
            raise RuntimeError("model exploded")

    with pytest.raises(RuntimeError, match="model exploded"):
        await agent()
    assert app.consumer.acked == []
    assert len(app.consumer._unacked_messages) == 3  # tracked, so the commit waits for them


async def test_take_batches_when_event_from_old_generation_then_dropped_unacked() -> None:
    app = FakeApp(consumer_generation_id=2)
    old, new = event(app, 0, generation=1), event(app, 1, generation=2)
    stream = await queued(app, old, new)
    batches = await take(stream)
    batch = await anext(batches)
    stream.channel.queue.put_nowait(event(app, 2, generation=2))
    await anext(batches)
    assert offsets(batch) == [1]
    assert app.consumer.acked == [1]
    assert not old.message.tracked
    await batches.aclose()


async def test_take_batches_when_flow_control_suspended_then_events_dropped() -> None:
    app = FakeApp(flow_control=FakeFlowControl(active=False))
    stream = await queued(app, event(app, 0), event(app, 1))
    batches = await take(stream, within=0.005)
    pending = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.03)
    assert not pending.done()  # both dropped: nothing to hand out
    app.flow_control.active = True
    stream.channel.queue.put_nowait(event(app, 2))
    assert offsets(await asyncio.wait_for(pending, 1.0)) == [2]
    assert app.consumer._unacked_messages == {pending.result()[0].message}
    await batches.aclose()


async def test_take_batches_when_channel_closed_then_iteration_ends() -> None:
    class ClosedQueue(asyncio.Queue[Any]):
        async def get(self) -> Any:
            raise StopAsyncIteration

    app = FakeApp()
    stream = FakeStream(app, ClosedQueue())
    got = [b async for b in await take(stream)]
    assert got == []
    assert stream.stop_iterations == 1


async def test_take_batches_when_stream_stops_then_iteration_ends() -> None:
    app = FakeApp()
    stream = await queued(app, event(app, 0))
    batches = await take(stream)
    await anext(batches)
    stream.stopped = True
    with pytest.raises(StopAsyncIteration):
        await anext(batches)


async def test_take_batches_when_channel_yields_non_event_then_type_error() -> None:
    app = FakeApp()
    stream = await queued(app, object())
    with pytest.raises(TypeError, match="not a Faust event"):
        await anext(await take(stream))
