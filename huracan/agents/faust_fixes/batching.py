"""Batches of events that are acknowledged only once the agent is done with them.

Corrects (docs/decisions/0002-faust-corrections.md):

* ``Stream.take_events`` acknowledges a batch the agent never finished (cancelled by a stop or
  a rebalance): :func:`take_batches` acknowledges a batch only when the agent asks for the
  next one, and takes it from the stream's buffer in one step;
* a stream acknowledges the events it drops while flow control is suspended or after the
  consumer generation changed: :class:`ProcessedEvent` (the app's ``Event`` class) refuses
  their acknowledgement until :func:`take_batches` has marked them processed.

Promise: an event is acknowledged only after the batch it was in was finished, so a batch cut
short is delivered again to whoever owns its partition next.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import faust
from faust.types import EventT, StreamT


class ProcessedEvent(faust.Event):
    """A Faust event that is not acknowledged when a stream drops it unprocessed.

    :func:`take_batches` marks the events of a finished batch ``processed``; an event that is
    not marked is refused an acknowledgement while flow control is suspended or after the
    consumer generation changed (exactly when Faust's stream drops events), so it is fetched
    again by whoever owns its partition next. Streams that do not batch ack as usual."""

    processed: bool = False

    def ack(self) -> bool:
        if not self.processed:
            app: Any = self.app
            if (
                not app.flow_control.is_active()
                or self.message.generation_id != app.consumer_generation_id
            ):
                return False
        return bool(super().ack())


async def take_batches(
    stream: StreamT[Any], max_: int, within: float, *, yield_empty: bool = False
) -> AsyncIterator[Sequence[EventT[Any]]]:
    """Up to ``max_`` events at a time: whatever the stream's buffer holds when the agent asks
    for the next batch, or, when it holds nothing, the first events to arrive within ``within``
    seconds (then the stream's stop flag is checked and the wait starts again; with
    ``yield_empty`` an empty batch is yielded first, so the agent can do its idle-time work).

    The events are taken straight from the stream's channel buffer, where Faust's conductor
    puts them, with the per-event bookkeeping of Faust's stream iterator: an event that arrived
    while flow control was suspended or under an older consumer generation is dropped (it was
    not processed, so it is not acknowledged, and the partition's next owner reads it again),
    the others are tracked as unacknowledged until their batch is finished. Faust's iterator
    also yields to the event loop and runs its processor chain once per event; this does
    neither.
    """
    s: Any = stream
    channel: Any = aiter(s.channel)  # the conductor delivers to this channel's buffer
    queue = channel.queue
    app = s.app
    flow_control = app.flow_control
    acking_topics = app.topics._acking_topics
    track = app.consumer._unacked_messages.add
    wait_for = asyncio.wait_for
    started = await s.maybe_start()
    try:
        while not s.should_stop:
            try:
                if queue.empty():
                    try:
                        first = await wait_for(queue.get(), within)
                    except TimeoutError:
                        if yield_empty:
                            yield ()
                        continue
                    taken = [first]
                else:
                    taken = [queue.get_nowait()]
                while len(taken) < max_ and not queue.empty():
                    taken.append(queue.get_nowait())
            except StopAsyncIteration:
                return  # the channel was closed (the worker is stopping), as Faust's iterator
            active = flow_control.is_active()
            generation = app.consumer_generation_id
            batch: list[EventT[Any]] = []
            for event in taken:
                if not isinstance(event, EventT):
                    raise TypeError(f"take_batches: {type(event).__name__} is not a Faust event")
                message = event.message
                if not active or message.generation_id != generation:
                    continue  # dropped unprocessed, as Faust's stream drops it
                if message.topic in acking_topics and not message.tracked:
                    message.tracked = True
                    track(message)
                batch.append(event)
            if not batch:
                continue
            yield batch
            # the agent asked for the next batch: this one is finished
            for event in batch:
                if isinstance(event, ProcessedEvent):
                    event.processed = True
                event.ack()
    finally:
        s._channel_stop_iteration(channel)
        if started:
            await s.stop()
            s.service_reset()
