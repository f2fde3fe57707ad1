"""Errors raised by the message bus adapters (``huracan.bus``).

Every class derives from :class:`BusError`, so ``except BusError`` catches them all. Bad
configuration is not a bus error: :func:`huracan.bus.create_message_bus` raises
:class:`huracan.config.ConfigError`, which names the offending key.
"""

from __future__ import annotations


class BusError(Exception):
    """Base class of every message bus error."""


class BusNotConnectedError(BusError):
    """An operation was attempted before :meth:`MessageBus.connect` or after ``disconnect``."""


class BusConnectionError(BusError):
    """The bus could not reach its server (Redis or Kafka) when connecting."""


class MessageEncodeError(BusError, TypeError):
    """A message's ``data`` cannot be encoded (a value JSON cannot represent)."""


class MalformedMessageError(BusError, ValueError):
    """A stored payload cannot be decoded into a :class:`Message`.

    Subscribers never raise this: they move such entries to the dead-letter stream. It is
    public for code that decodes payloads itself (``huracan.bus.message.decode_payload``).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
