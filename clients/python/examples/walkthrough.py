"""A service's first session with the platform, end to end (the suite runs it against
the running services: integration-tests/tests/clients.rs).

    CRM_NATS_URL=nats://127.0.0.1:4222 python examples/walkthrough.py

Settings: CRM_NATS_URL, CRM_SUBJECT_PREFIX (crm), CRM_STREAM (CRM_EVENTS), CRM_OUTCOMES, CRM_TOKEN (a
bearer token, when the platform checks them). Prints a JSON summary; exits non-zero on
any surprise.
"""

import asyncio
import json
import os
import uuid

from crm.v1 import commands_pb2, events_pb2

from crm_client import Client, CommandRefused


def register_customer(customer_id: str, *, phone: str | None) -> commands_pb2.RegisterCustomer:
    c = commands_pb2.RegisterCustomer(
        customer_id=customer_id,
        customer_type="individual",
        display_name="Wang Fang",
        region="east",
        first_touch_channel="web",
        aum_minor=1_234_500,
    )
    if phone:
        c.phone = phone
    return c


def checked_locally(command) -> list[str]:
    """The contract's rules this command breaks, as protovalidate finds them (empty
    when protovalidate is not installed)."""
    try:
        import protovalidate
    except ImportError:
        return []
    try:
        protovalidate.validate(command)
    except protovalidate.ValidationError as e:
        return [v.proto.rule_id for v in e.violations]
    return []


async def main() -> dict:
    prefix = os.environ.get("CRM_SUBJECT_PREFIX", "crm")
    client = await Client.connect(
        os.environ["CRM_NATS_URL"], prefix=prefix, actor="service:walkthrough",
        token=os.environ.get("CRM_TOKEN"),
    )
    manager_id, customer_id = str(uuid.uuid4()), str(uuid.uuid4())
    summary = {"customer_id": customer_id, "manager_id": manager_id, "refusals": {}}

    # Protobuf: a manager.
    await client.send(commands_pb2.RegisterManager(
        manager_id=manager_id, name="Li Wei", role="manager", team="east-1", region="east",
        branch="east-hq", holding_limit=100))

    # Standard proto3 JSON (lowerCamelCase, the 64-bit AUM as a string): a customer.
    register = register_customer(customer_id, phone="13800138000")
    first = await client.send(register, json=True)
    assert [e.event_type for e in first.events] == ["CustomerRegistered"], first
    # The same command again (same command id): one effect, the first answer.
    again = await client.send(register, json=True)
    assert again.duplicate and again.command_id == first.command_id, again

    # A rule of the contract, checked before sending and refused by the platform alike.
    no_key = client.prepare(register_customer(str(uuid.uuid4()), phone=None))
    summary["local_rules"] = checked_locally(no_key)
    try:
        await client.send(no_key)
        raise AssertionError("a customer without phone, e-mail or registration number was registered")
    except CommandRefused as refused:
        summary["refusals"]["no_contact_key"] = refused.code
        assert refused.command_id == no_key.meta.command_id

    await client.send(commands_pb2.AssignOwner(customer_id=customer_id, manager_id=manager_id,
                                               reason="first owner"))
    try:
        await client.send(commands_pb2.AssignOwner(customer_id=customer_id, manager_id=manager_id,
                                                   reason="again"))
        raise AssertionError("a second owner was assigned")
    except CommandRefused as refused:
        summary["refusals"]["assign_twice"] = refused.code

    # Publish and forget: a contact through the durable intake, its outcome read back.
    contact = commands_pb2.RecordContact(
        customer_id=customer_id, contact_id=str(uuid.uuid4()), manager_id=manager_id,
        channel="phone", direction="outbound", outcome="reached")
    await client.publish(contact, json=True)
    outcome = await client.outcome(contact, stream=os.environ.get("CRM_OUTCOMES", "CRM_OUTCOMES"))
    summary["intake"] = [e.event_type for e in outcome.events]

    # The customer's events from JetStream, through a durable consumer of our own.
    consumer = await client.events(
        stream=os.environ.get("CRM_STREAM", "CRM_EVENTS"),
        durable=f"walkthrough-{uuid.uuid4().hex[:8]}",
        filter_subject=f"{prefix}.events.customer.*.{customer_id}.>",
    )
    events = []
    for _ in range(20):
        for event in await consumer.fetch(batch=10, timeout=1.0):
            events.append(event)
            await event.ack()
        if len(events) >= 4:
            break
    summary["events"] = [e.event_type for e in events]
    registered, assigned, contacted = (e.payload for e in events[:3])
    assert isinstance(registered, events_pb2.CustomerRegistered), registered
    assert registered.customer_type == "individual" and registered.aum_minor == 1_234_500
    assert registered.display_name.startswith("enc:v1:"), "personal fields arrive encrypted"
    assert isinstance(assigned, events_pb2.OwnerAssigned), assigned
    assert assigned.manager_id == manager_id and assigned.HasField("at"), assigned
    assert isinstance(contacted, events_pb2.ContactRecorded) and contacted.by_owner, contacted
    summary["stream_versions"] = [e.envelope.stream_version for e in events]
    await client.close()
    return summary


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
