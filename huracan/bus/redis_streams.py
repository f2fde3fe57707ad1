"""Redis Streams message bus (``redis.asyncio``).

Layout: one stream per (stream type, coin), key ``{prefix}:{stream_type}:{coin}`` — one coin's
entries are totally ordered. Dead letters go to ``{prefix}:dead-letter``.

- **Publish**: ``XADD key MAXLEN ~ maxlen * payload <json>`` (``maxlen`` 0: no trimming).
  :meth:`RedisStreamsMessageBus.publish_many` pipelines many XADDs in one round trip.
- **Subscribe**: the group is created on demand (``XGROUP CREATE key group 0 MKSTREAM``,
  BUSYGROUP ignored) at the start of the stream. Then, in a loop:

  1. every ``min(claim_idle_ms / 2, 5 s)``: ``XAUTOCLAIM key group me claim_idle_ms cursor`` takes
     over entries that another (dead) consumer — or this one — left pending longer than
     ``claim_idle_ms``; their delivery counts come from ``XPENDING`` (pipelined). An entry
     delivered more than ``max_deliveries`` times is moved to the dead-letter stream and
     XACKed in one MULTI instead of being yielded;
  2. otherwise ``XREADGROUP GROUP group me COUNT batch_size BLOCK block_ms STREAMS key >``;
  3. each entry is decoded; a malformed one is dead-lettered and XACKed (MULTI), the rest are
     yielded in stream order.

  Lost connections are retried with backoff (0.1 s doubling to 5 s) without ending the
  subscription; a deleted group (NOGROUP) is recreated. When the iterator closes with nothing
  pending, its consumer is removed from the group (``XGROUP DELCONSUMER``); otherwise it stays,
  and its entries are claimed by others after ``claim_idle_ms``.
- **Ack**: ``XACK``.

A consumer that is alive but takes longer than ``claim_idle_ms`` over one entry will see it
claimed by another consumer: choose ``claim_idle_ms`` above the slowest processing time.
Redis restarts with pending entries (persistence, reclaim after restart) are outside the contract
suite; no test covers them yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from huracan.bus.base import MessageBus, PerLoop, close_in_owner_loops
from huracan.bus.errors import BusConnectionError, BusNotConnectedError, MalformedMessageError
from huracan.bus.message import PAYLOAD_FIELD, DeadLetter, Message, StreamType, decode, encode
from huracan.config import MessageBusConfig

log = logging.getLogger(__name__)

_PAYLOAD = PAYLOAD_FIELD.encode()
#: dead-letter entries keep each original field under this prefix
ORIGINAL_FIELD_PREFIX = "field:"


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStreamsMessageBus(MessageBus):
    """The Redis Streams adapter; one ``redis.asyncio.Redis`` client per event loop."""

    def __init__(self, config: MessageBusConfig, **client_options: Any) -> None:
        """``client_options`` go to :class:`redis.asyncio.Redis` as is (timeouts, TLS …)."""
        super().__init__(config)
        cfg = self._config
        self._client_options: dict[str, Any] = {
            "host": cfg.host,
            "port": cfg.port,
            "db": cfg.db,
            "password": cfg.password.get_secret_value() if cfg.password else None,
            "socket_connect_timeout": 5.0,
            "decode_responses": False,
            **client_options,
        }
        self._clients: PerLoop[aioredis.Redis] = PerLoop()
        self._maxlen = cfg.maxlen or None
        self._dead_letter_key = f"{cfg.stream_prefix}:dead-letter"
        self._claim_every_s = min(max(cfg.claim_idle_ms / 2, 5), 5000) / 1000.0

    # -- names ------------------------------------------------------------------------------

    def stream_key(self, stream_type: StreamType, coin: str) -> str:
        """``{prefix}:{stream_type}:{coin}``."""
        return f"{self._config.stream_prefix}:{StreamType(stream_type).value}:{coin}"

    @property
    def dead_letter_key(self) -> str:
        return self._dead_letter_key

    # -- connection -------------------------------------------------------------------------

    def _new_client(self) -> aioredis.Redis:
        return aioredis.Redis(**self._client_options)

    def client(self) -> aioredis.Redis:
        """This event loop's client (created on first use). Requires :meth:`connect`."""
        self._require_connected()
        return self._clients.get(self._new_client)

    async def connect(self) -> None:
        if self._connected:
            return
        client = self._clients.get(self._new_client)
        try:
            await cast(Awaitable[Any], client.ping())
        except RedisError as exc:
            await close_in_owner_loops(self._clients.drain(), _close)
            cfg = self._config
            raise BusConnectionError(
                f"cannot reach Redis at {cfg.host}:{cfg.port} (message_bus.host/port): {exc}"
            ) from exc
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False
        await close_in_owner_loops(self._clients.drain(), _close)

    # -- publish ----------------------------------------------------------------------------

    async def publish(self, message: Message) -> str:
        client = self.client()
        payload = encode(message)
        message_id = await client.xadd(
            self.stream_key(message.stream_type, message.coin),
            {_PAYLOAD: payload},
            maxlen=self._maxlen,
            approximate=True,
        )
        self._counters.add("published")
        return _s(message_id)

    async def publish_many(self, messages: Iterable[Message]) -> list[str]:
        client = self.client()
        pipe = client.pipeline(transaction=False)
        n = 0
        for message in messages:
            pipe.xadd(
                self.stream_key(message.stream_type, message.coin),
                {_PAYLOAD: encode(message)},
                maxlen=self._maxlen,
                approximate=True,
            )
            n += 1
        if not n:
            return []
        ids = await pipe.execute()
        self._counters.add("published", n)
        return [_s(i) for i in ids]

    # -- subscribe --------------------------------------------------------------------------

    async def _ensure_group(self, client: aioredis.Redis, key: str, group: str) -> None:
        try:
            await client.xgroup_create(key, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _reclaim(
        self, client: aioredis.Redis, key: str, group: str, name: str, cursor: bytes
    ) -> tuple[bytes, list[tuple[str, dict[bytes, bytes], int]]]:
        """XAUTOCLAIM one page; dead-letter what is over ``max_deliveries``; return the rest."""
        cfg = self._config
        reply = await client.xautoclaim(
            key, group, name, min_idle_time=cfg.claim_idle_ms, start_id=cursor,
            count=cfg.batch_size,
        )  # fmt: skip
        next_cursor: bytes = reply[0]
        claimed = [(i, f) for i, f in reply[1] if i is not None]
        if not claimed:
            return next_cursor, []
        pipe = client.pipeline(transaction=False)
        for entry_id, _ in claimed:
            pipe.xpending_range(key, group, min=entry_id, max=entry_id, count=1)
        details = await pipe.execute()
        out: list[tuple[str, dict[bytes, bytes], int]] = []
        for (entry_id, fields), detail in zip(claimed, details, strict=True):
            count = int(detail[0]["times_delivered"]) if detail else 1
            if count > cfg.max_deliveries:
                await self._dead_letter(
                    client,
                    key,
                    group,
                    name,
                    _s(entry_id),
                    fields or {},
                    f"delivered more than {cfg.max_deliveries} times",
                    count - 1,
                )
                continue
            out.append((_s(entry_id), fields or {}, count))
        return next_cursor, out

    async def _dead_letter(
        self,
        client: aioredis.Redis,
        key: str,
        group: str,
        consumer: str,
        entry_id: str,
        fields: dict[bytes, bytes],
        reason: str,
        delivery_count: int,
    ) -> None:
        record: dict[str | bytes, bytes | str | int | float] = {
            "reason": reason,
            "source": key,
            "message_id": entry_id,
            "group": group,
            "consumer": consumer,
            "delivery_count": delivery_count,
            "dead_lettered_at": repr(time.time()),
        }
        for field, value in fields.items():
            record[ORIGINAL_FIELD_PREFIX.encode() + field] = value
        pipe = client.pipeline(transaction=True)
        pipe.xadd(self._dead_letter_key, record)  # type: ignore[arg-type]
        pipe.xack(key, group, entry_id)
        await pipe.execute()
        self._counters.add("dead_lettered")
        log.warning("dead-lettered %s %s (group %s): %s", key, entry_id, group, reason)

    async def subscribe(
        self,
        stream_type: StreamType,
        coin: str,
        consumer_group: str,
        *,
        consumer_name: str | None = None,
        auto_ack: bool = False,
    ) -> AsyncIterator[Message]:
        stream_type = StreamType(stream_type)
        key = self.stream_key(stream_type, coin)
        name = self._consumer_name(consumer_name)
        cfg = self._config
        client = self.client()
        await self._ensure_group(client, key, consumer_group)
        streams: dict[Any, Any] = {key: ">"}
        cursor = b"0-0"
        next_claim = 0.0
        retry_s = 0.1
        try:
            while self._connected:
                deliveries: list[tuple[str, dict[bytes, bytes], int]] = []
                try:
                    client = self.client()
                    now = time.monotonic()
                    if now >= next_claim:
                        cursor, deliveries = await self._reclaim(
                            client, key, consumer_group, name, cursor
                        )
                        if cursor in (b"0-0", "0-0"):
                            next_claim = now + self._claim_every_s
                    if not deliveries:
                        wait_ms = int((next_claim - time.monotonic()) * 1000)
                        block = max(1, min(cfg.block_ms, wait_ms))
                        reply = await client.xreadgroup(
                            consumer_group, name, streams, count=cfg.batch_size, block=block
                        )
                        if reply:
                            deliveries = [(_s(i), f or {}, 1) for i, f in reply[0][1]]
                    retry_s = 0.1
                except BusNotConnectedError:  # disconnected meanwhile: the subscription ends
                    return
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    await self._ensure_group(client, key, consumer_group)
                    continue
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    if not self._connected:
                        return
                    log.warning(
                        "redis read of %s failed (%r); retrying in %.1fs", key, exc, retry_s
                    )
                    await asyncio.sleep(retry_s)
                    retry_s = min(retry_s * 2, 5.0)
                    continue
                for entry_id, fields, count in deliveries:
                    try:
                        message = decode(
                            fields.get(_PAYLOAD),
                            stream_type=stream_type,
                            coin=coin,
                            message_id=entry_id,
                            delivery_count=count,
                        )
                    except MalformedMessageError as exc:
                        await self._dead_letter(
                            client, key, consumer_group, name, entry_id, fields, exc.reason, count
                        )
                        continue
                    self._counters.add("delivered")
                    if count > 1:
                        self._counters.add("redelivered")
                    yield message
                    if auto_ack:
                        await self.ack_message(stream_type, coin, consumer_group, entry_id)
        finally:
            await self._forget_consumer(key, consumer_group, name)

    async def _forget_consumer(self, key: str, group: str, name: str) -> None:
        """Remove the consumer from the group if it holds nothing pending (best effort)."""
        if not self._connected:
            return
        try:
            client = self.client()
            mine = await client.xpending_range(key, group, "-", "+", 1, consumername=name)
            if not mine:
                await client.xgroup_delconsumer(key, group, name)
        except (RedisError, OSError, RuntimeError) as exc:
            log.debug("could not remove consumer %s from %s/%s: %r", name, key, group, exc)

    # -- ack and inspection -----------------------------------------------------------------

    async def ack_message(
        self, stream_type: StreamType, coin: str, group_name: str, message_id: str
    ) -> bool:
        n = await self.client().xack(self.stream_key(stream_type, coin), group_name, message_id)
        if n:
            self._counters.add("acked")
        return bool(n)

    async def ack_messages(
        self, stream_type: StreamType, coin: str, group_name: str, message_ids: Iterable[str]
    ) -> int:
        ids = list(message_ids)
        if not ids:
            return 0
        n = int(await self.client().xack(self.stream_key(stream_type, coin), group_name, *ids))
        self._counters.add("acked", n)
        return n

    async def pending_count(self, stream_type: StreamType, coin: str, group_name: str) -> int:
        try:
            summary = await self.client().xpending(self.stream_key(stream_type, coin), group_name)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        return int(summary["pending"])

    async def read_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        entries = await self.client().xrange(self._dead_letter_key, "-", "+", count=limit)
        out: list[DeadLetter] = []
        for entry_id, raw in entries:
            fields = {_s(k): v for k, v in raw.items()}
            original = {
                k[len(ORIGINAL_FIELD_PREFIX) :]: v
                for k, v in fields.items()
                if k.startswith(ORIGINAL_FIELD_PREFIX)
            }
            count = fields.get("delivery_count")
            stamp = fields.get("dead_lettered_at")
            out.append(
                DeadLetter(
                    dead_letter_id=_s(entry_id),
                    source=_s(fields.get("source", b"")),
                    message_id=_s(fields.get("message_id", b"")),
                    reason=_s(fields.get("reason", b"")),
                    fields=original,
                    group=_s(fields["group"]) if "group" in fields else None,
                    consumer=_s(fields["consumer"]) if "consumer" in fields else None,
                    delivery_count=int(count) if count is not None else None,
                    dead_lettered_at=float(stamp) if stamp is not None else None,
                )
            )
        return out


async def _close(client: aioredis.Redis) -> None:
    await client.aclose()
