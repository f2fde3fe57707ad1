"""Redis Streams bus: publish and consume+ack messages/s, next to raw redis-py in the same run.

Baselines do the same work with ``redis.asyncio`` directly, no bus: the same JSON payload
(``json.dumps`` of the same fields) in one ``payload`` field, ``XADD … MAXLEN ~``; consuming
with ``XREADGROUP COUNT 100``, ``json.loads`` of each entry and one ``XACK`` per entry — what the
spec's loop (``async for message in bus.subscribe(...)`` + ``await bus.ack_message(...)``)
costs. The bus adds: the :class:`Message` object (event id), payload validation, stats,
XAUTOCLAIM passes, per-loop client lookup. Target: the bus at >= 50% of raw.

Needs the Redis of ``HURACAN_REDIS_URL`` (default: the local launcher's); it writes streams
under a prefix of its own and deletes them at the end. The in-memory bus is measured too, for
reference (no baseline: it has no server).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import redis.asyncio as aioredis

from benchmarks.harness import Report
from huracan.bus import Message, MessageBus, StreamType, create_message_bus
from huracan.config import DEFAULT_REDIS_URL

MD = StreamType.MARKET_DATA
N_PUBLISH = 10_000
N_CONSUME = 20_000
BATCH = 100
REPEATS = 3
MAXLEN = 1_000_000


def _tick(i: int) -> dict[str, float]:
    return {"price": 50_000.0 + i, "volume": 1000.0, "seq": float(i)}


async def _median(run: Callable[[int], Awaitable[int]]) -> tuple[float, list[float]]:
    rates = []
    for r in range(REPEATS):
        t0 = time.perf_counter()
        n = await run(r)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), rates


class Bench:
    def __init__(self, host: str, port: int) -> None:
        self.prefix = f"bench-bus-{uuid.uuid4().hex[:8]}"
        self.raw = aioredis.Redis(host=host, port=port)
        self.bus: MessageBus = create_message_bus(
            {"type": "redis_streams", "host": host, "port": port, "stream_prefix": self.prefix,
             "maxlen": MAXLEN, "batch_size": BATCH, "block_ms": 100}
        )  # fmt: skip
        self.memory: MessageBus = create_message_bus(
            {"type": "memory", "stream_prefix": self.prefix, "batch_size": BATCH}
        )

    def key(self, name: str) -> str:
        return f"{self.prefix}:raw:{name}"

    def raw_payload(self, coin: str, i: int) -> bytes:
        return json.dumps(
            {"v": 1, "stream": "market-data", "coin": coin, "ts": time.time(),
             "event_id": uuid.uuid4().hex, "correlation_id": None, "causation_id": None,
             "data": _tick(i)},
            separators=(",", ":"),
        ).encode()  # fmt: skip

    # -- publish --------------------------------------------------------------------------

    async def bus_publish(self, r: int, bus: MessageBus | None = None) -> int:
        bus = bus or self.bus
        coin = f"PUB{r}"
        for i in range(N_PUBLISH):
            await bus.publish(Message(MD, coin, _tick(i)))
        return N_PUBLISH

    async def raw_publish(self, r: int) -> int:
        key = self.key(f"pub{r}")
        for i in range(N_PUBLISH):
            await self.raw.xadd(
                key, {b"payload": self.raw_payload("PUB", i)}, maxlen=MAXLEN, approximate=True
            )
        return N_PUBLISH

    async def bus_publish_many(self, r: int) -> int:
        coin = f"PUBMANY{r}"
        for start in range(0, N_CONSUME, BATCH):
            await self.bus.publish_many(
                [Message(MD, coin, _tick(i)) for i in range(start, start + BATCH)]
            )
        return N_CONSUME

    async def raw_publish_many(self, r: int) -> int:
        key = self.key(f"pubmany{r}")
        for start in range(0, N_CONSUME, BATCH):
            pipe = self.raw.pipeline(transaction=False)
            for i in range(start, start + BATCH):
                pipe.xadd(
                    key, {b"payload": self.raw_payload("PUBMANY", i)}, maxlen=MAXLEN,
                    approximate=True,
                )  # fmt: skip
            await pipe.execute()
        return N_CONSUME

    # -- consume + ack --------------------------------------------------------------------

    async def bus_consume(self, r: int, bus: MessageBus | None = None, fill: bool = True) -> int:
        bus = bus or self.bus
        coin = f"PUBMANY{r}"  # filled by bus_publish_many
        if fill:
            await bus.publish_many([Message(MD, coin, _tick(i)) for i in range(N_CONSUME)])
        n = 0
        t0 = time.perf_counter()
        subscription = bus.subscribe(MD, coin, "bench")
        async for message in subscription:
            await bus.ack_message(MD, coin, "bench", message.message_id)  # type: ignore[arg-type]
            n += 1
            if n == N_CONSUME:
                break
        await subscription.aclose()
        self.last_consume_s = time.perf_counter() - t0
        return n

    async def raw_consume(self, r: int) -> int:
        key = self.key(f"pubmany{r}")  # filled by raw_publish_many
        await self.raw.xgroup_create(key, "bench", id="0", mkstream=True)
        n = 0
        while n < N_CONSUME:
            reply = await self.raw.xreadgroup(
                "bench", "raw-consumer", {key: ">"}, count=BATCH, block=100
            )
            for entry_id, fields in reply[0][1] if reply else ():
                json.loads(fields[b"payload"])
                await self.raw.xack(key, "bench", entry_id)
                n += 1
        return n

    async def cleanup(self) -> None:
        async for key in self.raw.scan_iter(match=f"{self.prefix}:*"):
            await self.raw.delete(key)
        await self.raw.aclose()


async def run() -> Report:
    url = urlsplit(os.environ.get("HURACAN_REDIS_URL") or DEFAULT_REDIS_URL)
    bench = Bench(url.hostname or "127.0.0.1", url.port or 6379)
    report = Report(
        "bus",
        ["adapter", "operation", "msgs/s (median)", "raw redis-py msgs/s", "bus / raw"],
    )
    await bench.bus.connect()
    await bench.memory.connect()
    try:
        # publish: one await per message
        raw, raw_runs = await _median(bench.raw_publish)
        bus, bus_runs = await _median(bench.bus_publish)
        report.add("redis_streams", "publish (one at a time)", bus, raw, bus / raw)
        # publish_many: pipelines of 100 (these fill the streams consumed next)
        raw_many, _ = await _median(bench.raw_publish_many)
        bus_many, _ = await _median(bench.bus_publish_many)
        report.add("redis_streams", f"publish_many ({BATCH} per pipeline)", bus_many, raw_many,
                   bus_many / raw_many)  # fmt: skip

        # consume + ack one by one (streams filled above)
        async def bus_consume(r: int) -> int:
            return await bench.bus_consume(r, fill=False)

        raw_c, _ = await _median(bench.raw_consume)
        bus_c, _ = await _median(bus_consume)
        report.add("redis_streams", "consume + ack each", bus_c, raw_c, bus_c / raw_c)

        mem_pub, _ = await _median(lambda r: bench.bus_publish(r, bench.memory))
        mem_c, _ = await _median(lambda r: bench.bus_consume(r, bench.memory))
        report.add("memory", "publish (one at a time)", mem_pub, "", "")
        report.add("memory", "publish_many + consume + ack each", mem_c, "", "")
        report.notes.append(
            f"{N_PUBLISH} publishes / {N_CONSUME} consumed per run, median of {REPEATS} runs; "
            "raw = redis.asyncio with the same JSON payload, XADD MAXLEN ~, "
            "XREADGROUP COUNT 100 + json.loads + XACK per entry."
        )
        report.notes.append(
            f"publish runs (bus): {[round(x) for x in bus_runs]}; "
            f"(raw): {[round(x) for x in raw_runs]}"
        )
        report.extra["target"] = "bus >= 50% of raw redis-py"
    finally:
        await bench.bus.disconnect()
        await bench.memory.disconnect()
        await bench.cleanup()
    return report


def main() -> int:
    report = asyncio.run(run())
    ratios = [row[4] for row in report.rows if isinstance(row[4], float)]
    report.extra["target_met"] = all(r >= 0.5 for r in ratios)
    report.notes.append(
        f"target (bus >= 50% of raw): {'met' if report.extra['target_met'] else 'NOT met'}"
    )
    report.emit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
