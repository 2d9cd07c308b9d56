"""Events from JetStream, decoded by the contract (proto/crm/v1/events.proto).

The body of a message is the stored event (``EventEnvelope``) in JSON; its ``payload``
is the event's message in proto3 JSON. The message is chosen by ``event_type`` and
``schema_version``, as the ``(crm.v1.event)`` option of each message names them.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.message import Message

from crm.v1 import events_pb2, options_pb2


def _catalogue() -> dict[tuple[str, int], type[Message]]:
    out = {}
    for name, descriptor in events_pb2.DESCRIPTOR.message_types_by_name.items():
        options = descriptor.GetOptions()
        if options.HasExtension(options_pb2.event):
            event = options.Extensions[options_pb2.event]
            out[(event.type, event.schema_version)] = getattr(events_pb2, name)
    return out


_CATALOGUE = _catalogue()


def event_class(event_type: str, schema_version: int) -> type[Message] | None:
    """The generated message class of an event type at a schema version, if known."""
    return _CATALOGUE.get((event_type, schema_version))


@dataclass
class Event:
    """One published event: its envelope and its payload as the generated message
    (``None`` when this client's contract does not know the type or version: update
    the client, the event is still acknowledged only if you say so)."""

    envelope: events_pb2.EventEnvelope
    payload: Message | None
    subject: str
    _msg: object

    @property
    def event_type(self) -> str:
        return self.envelope.event_type

    async def ack(self) -> None:
        await self._msg.ack()


def decode(subject: str, data: bytes, msg=None) -> Event:
    """Decode a message body: fields added to the contract later are ignored."""
    body = json.loads(data)
    envelope = events_pb2.EventEnvelope()
    json_format.ParseDict(body, envelope, ignore_unknown_fields=True)
    cls = event_class(envelope.event_type, envelope.schema_version)
    payload = None
    if cls is not None:
        payload = json_format.ParseDict(body.get("payload") or {}, cls(), ignore_unknown_fields=True)
    return Event(envelope, payload, subject, msg)


class EventConsumer:
    """A durable pull consumer: ``fetch`` returns decoded events; acknowledge each once
    handled (explicit acks: an unacknowledged event is delivered again)."""

    def __init__(self, sub):
        self._sub = sub

    @classmethod
    async def open(cls, js, *, stream: str, durable: str, subject: str) -> "EventConsumer":
        sub = await js.pull_subscribe(subject, durable=durable, stream=stream)
        return cls(sub)

    async def fetch(self, batch: int = 100, timeout: float = 2.0) -> list[Event]:
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except asyncio.TimeoutError:
            return []
        return [decode(m.subject, m.data, m) for m in msgs]
