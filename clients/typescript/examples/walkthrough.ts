// A service's first session with the platform, end to end (the suite runs it against
// the running services: integration-tests/tests/clients.rs).
//
//   CRM_NATS_URL=nats://127.0.0.1:4222 npm run walkthrough
//
// Settings: CRM_NATS_URL, CRM_SUBJECT_PREFIX (crm), CRM_STREAM (CRM_EVENTS), CRM_OUTCOMES, CRM_TOKEN.
// Prints a JSON summary; exits non-zero on any surprise.

import { randomUUID } from "node:crypto";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import { Client, CommandRefused } from "../src/index.js";
import {
  AssignOwnerSchema,
  RegisterCustomerSchema,
  RecordContactSchema,
  RegisterManagerSchema,
  type RegisterCustomer,
} from "../src/gen/crm/v1/commands_pb.js";
import { ContactRecordedSchema, CustomerRegisteredSchema, OwnerAssignedSchema } from "../src/gen/crm/v1/events_pb.js";
import { isMessage } from "@bufbuild/protobuf";

function registerCustomer(customerId: string, phone?: string): RegisterCustomer {
  return create(RegisterCustomerSchema, {
    customerId,
    customerType: "individual",
    displayName: "Wang Fang",
    region: "east",
    firstTouchChannel: "web",
    aumMinor: 1_234_500n,
    phone,
  });
}

async function refusal(p: Promise<unknown>): Promise<CommandRefused> {
  try {
    await p;
  } catch (e) {
    if (e instanceof CommandRefused) return e;
    throw e;
  }
  throw new Error("accepted where a refusal was expected");
}

async function main() {
  const prefix = process.env.CRM_SUBJECT_PREFIX ?? "crm";
  const client = await Client.connect(process.env.CRM_NATS_URL!, {
    prefix,
    actor: "service:walkthrough-ts",
    token: process.env.CRM_TOKEN,
  });
  const managerId = randomUUID();
  const customerId = randomUUID();
  const summary: Record<string, unknown> = { customer_id: customerId, refusals: {} };
  const refusals = summary.refusals as Record<string, string>;

  // Protobuf: a manager.
  await client.send(RegisterManagerSchema, create(RegisterManagerSchema, {
    managerId, name: "Li Wei", role: "manager", team: "east-1", region: "east", branch: "east-hq", holdingLimit: 100,
  }));

  // Standard proto3 JSON (lowerCamelCase, the 64-bit AUM as a string): a customer.
  const register = registerCustomer(customerId, "13800138000");
  const first = await client.send(RegisterCustomerSchema, register, { json: true });
  assert.deepEqual(first.events.map((e) => e.eventType), ["CustomerRegistered"]);
  const again = await client.send(RegisterCustomerSchema, register, { json: true });
  assert.ok(again.duplicate && again.commandId === first.commandId, "the same command id repeats its answer");

  // A rule of the contract, checked locally and refused by the platform alike.
  const noKey = client.prepare(registerCustomer(randomUUID()));
  const local = createValidator().validate(RegisterCustomerSchema, noKey);
  summary.local_rules = local.kind === "invalid" ? local.violations.map((v) => v.ruleId) : [];
  const refused = await refusal(client.send(RegisterCustomerSchema, noKey));
  assert.equal(refused.commandId, noKey.meta!.commandId);
  refusals.no_contact_key = refused.code;

  await client.send(AssignOwnerSchema, create(AssignOwnerSchema, { customerId, managerId, reason: "first owner" }));
  refusals.assign_twice = (await refusal(
    client.send(AssignOwnerSchema, create(AssignOwnerSchema, { customerId, managerId, reason: "again" })),
  )).code;

  // Publish and forget: a contact through the durable intake, its outcome read back.
  const contact = create(RecordContactSchema, {
    customerId, contactId: randomUUID(), managerId, channel: "phone", direction: "outbound", outcome: "reached",
  });
  await client.publish(RecordContactSchema, contact, { json: true });
  const decided = await client.outcome(RecordContactSchema, contact, { stream: process.env.CRM_OUTCOMES ?? "CRM_OUTCOMES" });
  summary.intake = decided.events.map((e) => e.eventType);

  // The customer's events from JetStream, through a durable consumer of our own.
  const consumer = await client.events({
    stream: process.env.CRM_STREAM ?? "CRM_EVENTS",
    durable: `walkthrough-ts-${randomUUID().slice(0, 8)}`,
    filterSubject: `${prefix}.events.customer.*.${customerId}.>`,
  });
  const events = [];
  for (let i = 0; i < 20 && events.length < 4; i++) {
    for (const e of await consumer.fetch(10, 1000)) {
      events.push(e);
      e.ack();
    }
  }
  summary.events = events.map((e) => e.envelope.eventType);
  const [registered, assigned, contacted] = events.map((e) => e.payload);
  assert.ok(isMessage(registered, CustomerRegisteredSchema));
  assert.equal(registered.customerType, "individual");
  assert.equal(registered.aumMinor, 1_234_500n);
  assert.ok(registered.displayName.startsWith("enc:v1:"), "personal fields arrive encrypted");
  assert.ok(isMessage(assigned, OwnerAssignedSchema));
  assert.equal(assigned.managerId, managerId);
  assert.ok(assigned.at !== undefined);
  assert.ok(isMessage(contacted, ContactRecordedSchema) && contacted.byOwner);
  await client.close();
  console.log(JSON.stringify(summary));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
