"""Client of the CRM event platform.

Commands go over NATS request/reply (subject ``<prefix>.cmd.<name>``) as protobuf, or as
standard proto3 JSON; events come from the JetStream stream through a durable pull
consumer, each payload decoded into its generated message. See README.md.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass

import nats
import nats.js.errors
from google.protobuf import json_format
from google.protobuf.message import Message

from crm.v1 import commands_pb2

from crm_client.events import Event, EventConsumer, event_class

__all__ = [
    "Client",
    "CommandRefused",
    "Event",
    "EventConsumer",
    "Reply",
    "command_name",
    "event_class",
]


class CommandRefused(Exception):
    """The platform refused a command; nothing was changed.

    ``code`` is the stable machine code (docs/api.md), e.g.
    ``ownership.holding_limit_reached`` or, for a rule of the contract,
    the rule's id (``customer.contact_key_required``).
    """

    def __init__(self, command_id: str, problem: commands_pb2.Problem):
        super().__init__(f"{problem.code}: {problem.detail or problem.title}")
        self.command_id = command_id
        self.code = problem.code
        self.status = problem.status
        self.title = problem.title
        self.detail = problem.detail


@dataclass
class Reply:
    """An accepted command: its id, whether it repeated an earlier one, its events."""

    command_id: str
    duplicate: bool
    events: list[commands_pb2.AppendedEvent]


def command_name(message: Message) -> str:
    """The command's name (subject token, HTTP path): ``RegisterCustomer`` → ``register_customer``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", message.DESCRIPTOR.name).lower()


class Client:
    """Sends commands to the platform and follows its events.

    ``actor`` is who asks (``service:<name>``); with authentication on, the platform
    records the token's actor instead. ``token`` is a bearer token
    (``Authorization`` header), as over HTTP.
    """

    def __init__(self, nc: nats.NATS, *, prefix: str = "crm", actor: str, token: str | None = None,
                 timeout: float = 5.0, attempts: int = 3):
        self.nc = nc
        self.prefix = prefix
        self.actor = actor
        self.token = token
        self.timeout = timeout
        self.attempts = attempts

    @classmethod
    async def connect(cls, url: str, *, nats_options: dict | None = None, **kwargs) -> "Client":
        """Connect to NATS at ``url``; ``nats_options`` go to ``nats.connect`` as they are:
        with the platform's NATS users, your credentials (``user_credentials=`` or the
        URL's user and password) and ``inbox_prefix=b"_INBOX.<user>"``, the only inbox
        your user may read (``crm nats auth-conf``). Or build ``Client(nc, …)`` over a
        connection of your own."""
        return cls(await nats.connect(url, **(nats_options or {})), **kwargs)

    async def close(self) -> None:
        await self.nc.drain()

    def prepare(self, command: Message) -> Message:
        """Fill the command's envelope where it is empty: a new command id (its
        idempotency key) and this client's actor. ``send`` does it; call it first to
        check a command with protovalidate before sending it."""
        meta = command.meta
        if not meta.command_id:
            meta.command_id = str(uuid.uuid4())
        if not meta.actor:
            meta.actor = self.actor
        return command

    async def send(self, command: Message, *, json: bool = False) -> Reply:
        """Send a command and wait for its answer.

        The command's ``meta.command_id`` is its idempotency key: set here when empty,
        kept when given, and the same on every attempt, so a retry after a timeout has
        one effect and gets the first answer (``duplicate`` true). Raises
        ``CommandRefused`` when the platform refuses it.
        """
        meta = self.prepare(command).meta
        body, headers = self._body(command, json)
        subject = f"{self.prefix}.cmd.{command_name(command)}"
        answer = await self._request(subject, body, headers)
        reply = commands_pb2.CommandReply()
        if json:
            json_format.Parse(answer.data, reply, ignore_unknown_fields=True)
        else:
            reply.ParseFromString(answer.data)
        if not reply.accepted:
            raise CommandRefused(reply.command_id or meta.command_id, reply.problem)
        return Reply(reply.command_id, reply.duplicate, list(reply.events))

    def _body(self, command: Message, json: bool) -> tuple[bytes, dict[str, str]]:
        headers = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if json:
            headers["Content-Type"] = "application/json"
            return json_format.MessageToJson(command).encode(), headers
        return command.SerializeToString(), headers

    async def publish(self, command: Message, *, json: bool = False) -> str:
        """Durable ingestion: store the command in the platform's intake and return its
        id without waiting for a decision (docs/api.md, "Durable ingestion"). The stream
        drops a repeat of the same command id; the platform decides it once, even if it
        is down now, and files its outcome under the id (``outcome``)."""
        meta = self.prepare(command).meta
        body, headers = self._body(command, json)
        headers["Nats-Msg-Id"] = meta.command_id
        await self.nc.jetstream().publish(
            f"{self.prefix}.intake.{command_name(command)}", body, headers=headers)
        return meta.command_id

    async def outcome(self, command: Message, *, stream: str = "CRM_OUTCOMES",
                      wait: float = 30.0) -> Reply:
        """The outcome of a command given to ``publish``, waiting up to ``wait`` seconds
        for it; raises ``CommandRefused`` when it was refused."""
        subject = f"{self.prefix}.outcomes.{command_name(command)}.{command.meta.command_id}"
        js = self.nc.jsm()
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            try:
                msg = await js.get_msg(stream, subject=subject, direct=True)
                break
            except nats.js.errors.NotFoundError:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"no outcome of {subject} within {wait} s") from None
                await asyncio.sleep(0.2)
        reply = commands_pb2.CommandReply()
        if (msg.headers or {}).get("Content-Type") == "application/json":
            json_format.Parse(msg.data, reply, ignore_unknown_fields=True)
        else:
            reply.ParseFromString(msg.data)
        if not reply.accepted:
            raise CommandRefused(reply.command_id, reply.problem)
        return Reply(reply.command_id, reply.duplicate, list(reply.events))

    async def _request(self, subject: str, body: bytes, headers: dict[str, str]):
        for attempt in range(1, self.attempts + 1):
            try:
                return await self.nc.request(subject, body, timeout=self.timeout, headers=headers)
            except (asyncio.TimeoutError, nats.errors.NoRespondersError):
                if attempt == self.attempts:
                    raise
                await asyncio.sleep(0.2 * attempt)
        raise AssertionError("unreachable")

    async def events(self, *, stream: str = "CRM_EVENTS", durable: str,
                     filter_subject: str | None = None) -> EventConsumer:
        """A durable pull consumer of the events (created when it does not exist), each
        event decoded into its message; see ``EventConsumer``."""
        subject = filter_subject or f"{self.prefix}.events.>"
        return await EventConsumer.open(self.nc.jetstream(), stream=stream, durable=durable,
                                        subject=subject)
