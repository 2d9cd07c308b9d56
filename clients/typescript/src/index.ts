// Client of the CRM event platform for Node.
//
// Commands go over NATS request/reply (subject `<prefix>.cmd.<name>`) as protobuf or as
// standard proto3 JSON; events come from the JetStream stream through a durable pull
// consumer, each payload decoded into its generated message. See README.md.

import { randomUUID } from "node:crypto";
import {
  create,
  fromBinary,
  fromJson,
  fromJsonString,
  getOption,
  hasOption,
  toBinary,
  toJsonString,
  type DescMessage,
  type JsonValue,
  type Message,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  AckPolicy,
  connect,
  headers as natsHeaders,
  type ConnectionOptions,
  type JetStreamClient,
  type NatsConnection,
} from "nats";
import {
  CommandReplySchema,
  type AppendedEvent,
  type CommandMeta,
  type Problem,
} from "./gen/crm/v1/commands_pb.js";
import { EventEnvelopeSchema, file_crm_v1_events, type EventEnvelope } from "./gen/crm/v1/events_pb.js";
import { event as eventOption } from "./gen/crm/v1/options_pb.js";

/** Direct get of a stream's last message on a subject (`$JS.API.DIRECT.GET.<stream>.<subject>`). */
interface DirectGet {
  getMessage(stream: string, query: { last_by_subj: string }): Promise<{ data: Uint8Array; header?: { get(k: string): string } }>;
}

/** A command message: every command has `meta` (its envelope). */
export type Command = Message & { meta?: CommandMeta };

/** The platform refused a command; nothing was changed. `code` is the stable machine
 * code (docs/api.md), or a contract rule's id (`customer.contact_key_required`). */
export class CommandRefused extends Error {
  readonly code: string;
  readonly status: number;
  readonly detail: string;
  constructor(readonly commandId: string, problem: Problem) {
    super(`${problem.code}: ${problem.detail || problem.title}`);
    this.code = problem.code;
    this.status = problem.status;
    this.detail = problem.detail;
  }
}

export interface Reply {
  commandId: string;
  duplicate: boolean;
  events: AppendedEvent[];
}

export interface ClientOptions {
  prefix?: string;
  /** Passed to nats.js's `connect` as they are: with the platform's NATS users, your
   * credentials (`user`/`pass`, `authenticator`) and `inboxPrefix: "_INBOX.<user>"`, the
   * only inbox your user may read (`crm nats auth-conf`). */
  nats?: Omit<ConnectionOptions, "servers">;
  /** Who asks (`service:<name>`); with authentication on, the token's actor is recorded. */
  actor: string;
  /** A bearer token, sent as the `Authorization` header. */
  token?: string;
  timeoutMs?: number;
  attempts?: number;
}

/** `RegisterCustomer` → `register_customer`: the command's subject token. */
export function commandName(schema: DescMessage): string {
  return schema.name.replace(/(?<!^)([A-Z])/g, "_$1").toLowerCase();
}

export class Client {
  private constructor(readonly nc: NatsConnection, private readonly options: Required<Omit<ClientOptions, "token" | "nats">> & { token?: string }) {}

  static async connect(url: string, options: ClientOptions): Promise<Client> {
    const nc = await connect({ ...options.nats, servers: url });
    return Client.over(nc, options);
  }

  /** A client over a NATS connection of your own. */
  static over(nc: NatsConnection, options: ClientOptions): Client {
    return new Client(nc, { prefix: "crm", timeoutMs: 5000, attempts: 3, ...options });
  }

  async close(): Promise<void> {
    await this.nc.drain();
  }

  /** Fill the envelope where it is empty: a new command id (the idempotency key) and
   * this client's actor. `send` does it; call it first to validate a command locally. */
  prepare<T extends Command>(command: T): T {
    command.meta ??= { $typeName: "crm.v1.CommandMeta", commandId: "", actor: "" } as CommandMeta;
    command.meta.commandId ||= randomUUID();
    command.meta.actor ||= this.options.actor;
    return command;
  }

  /** Send a command and wait for its answer. The command id stays the same on every
   * attempt, so a retry has one effect and gets the first answer (`duplicate`). Throws
   * `CommandRefused` when the platform refuses it. */
  async send<D extends DescMessage>(schema: D, command: MessageShape<D> & Command, { json = false } = {}): Promise<Reply> {
    this.prepare(command);
    const { h, body } = this.encode(schema, command, json);
    const subject = `${this.options.prefix}.cmd.${commandName(schema)}`;
    const answer = await this.request(subject, body, h);
    const reply = json
      ? fromJsonString(CommandReplySchema, new TextDecoder().decode(answer), { ignoreUnknownFields: true })
      : fromBinary(CommandReplySchema, answer);
    if (!reply.accepted) {
      throw new CommandRefused(reply.commandId || command.meta!.commandId, reply.problem!);
    }
    return { commandId: reply.commandId, duplicate: reply.duplicate, events: reply.events };
  }

  /** Durable ingestion: store the command in the platform's intake and return its id
   * without waiting for a decision (docs/api.md, "Durable ingestion"). The platform
   * decides it once, even if it is down now, and files its outcome under the id. */
  async publish<D extends DescMessage>(schema: D, command: MessageShape<D> & Command, { json = false } = {}): Promise<string> {
    this.prepare(command);
    const { h, body } = this.encode(schema, command, json);
    const id = command.meta!.commandId;
    await this.nc.jetstream().publish(`${this.options.prefix}.intake.${commandName(schema)}`, body, { headers: h, msgID: id });
    return id;
  }

  /** The outcome of a command given to `publish`, waiting up to `waitMs` for it; throws
   * `CommandRefused` when it was refused. */
  async outcome<D extends DescMessage>(schema: D, command: MessageShape<D> & Command, { stream = "CRM_OUTCOMES", waitMs = 30_000 } = {}): Promise<Reply> {
    const subject = `${this.options.prefix}.outcomes.${commandName(schema)}.${command.meta!.commandId}`;
    // The manager's direct-get API (nats.js implements it; its interface leaves it out).
    const { direct } = (await this.nc.jetstreamManager()) as unknown as { direct: DirectGet };
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        const m = await direct.getMessage(stream, { last_by_subj: subject });
        if (m) {
          const json = m.header?.get("Content-Type") === "application/json";
          const reply = json
            ? fromJsonString(CommandReplySchema, new TextDecoder().decode(m.data), { ignoreUnknownFields: true })
            : fromBinary(CommandReplySchema, m.data);
          if (!reply.accepted) throw new CommandRefused(reply.commandId, reply.problem!);
          return { commandId: reply.commandId, duplicate: reply.duplicate, events: reply.events };
        }
      } catch (e) {
        if (e instanceof CommandRefused) throw e;
        if (!String(e).includes("404") && !String(e).toLowerCase().includes("not found")) throw e;
      }
      if (Date.now() > deadline) throw new Error(`no outcome of ${subject} within ${waitMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** A command's body and headers (its token; JSON's content type). */
  private encode<D extends DescMessage>(schema: D, command: MessageShape<D>, json: boolean) {
    const h = natsHeaders();
    if (this.options.token) h.set("Authorization", `Bearer ${this.options.token}`);
    if (json) {
      h.set("Content-Type", "application/json");
      return { h, body: new TextEncoder().encode(toJsonString(schema, command)) };
    }
    return { h, body: toBinary(schema, command) };
  }

  private async request(subject: string, body: Uint8Array, h: ReturnType<typeof natsHeaders>): Promise<Uint8Array> {
    for (let attempt = 1; ; attempt++) {
      try {
        const m = await this.nc.request(subject, body, { timeout: this.options.timeoutMs, headers: h });
        return m.data;
      } catch (e) {
        if (attempt >= this.options.attempts) throw e;
        await new Promise((r) => setTimeout(r, 200 * attempt));
      }
    }
  }

  /** A durable pull consumer of the events (created when it does not exist). */
  async events(options: { stream?: string; durable: string; filterSubject?: string }): Promise<EventConsumer> {
    const stream = options.stream ?? "CRM_EVENTS";
    const jsm = await this.nc.jetstreamManager();
    await jsm.consumers.add(stream, {
      durable_name: options.durable,
      filter_subject: options.filterSubject ?? `${this.options.prefix}.events.>`,
      ack_policy: AckPolicy.Explicit,
    });
    return new EventConsumer(this.nc.jetstream(), stream, options.durable);
  }
}

/** The message of each event type and schema version, by its `(crm.v1.event)` option. */
const catalogue = new Map<string, DescMessage>();
for (const message of file_crm_v1_events.messages) {
  if (hasOption(message, eventOption)) {
    const e = getOption(message, eventOption);
    catalogue.set(`${e.type}/${e.schemaVersion}`, message);
  }
}

/** The generated message of an event type at a schema version, if this contract knows it. */
export function eventSchema(eventType: string, schemaVersion: number): DescMessage | undefined {
  return catalogue.get(`${eventType}/${schemaVersion}`);
}

export interface Event {
  envelope: EventEnvelope;
  /** The payload as its message, or undefined for a type this contract does not know. */
  payload: Message | undefined;
  subject: string;
  ack(): void;
}

/** Decode a message body (the stored event, JSON); fields added later are ignored. */
export function decodeEvent(subject: string, data: Uint8Array, ack: () => void = () => {}): Event {
  const body = JSON.parse(new TextDecoder().decode(data)) as { [k: string]: JsonValue };
  const envelope = fromJson(EventEnvelopeSchema, body, { ignoreUnknownFields: true });
  const schema = eventSchema(envelope.eventType, envelope.schemaVersion);
  const payload = schema ? fromJson(schema, body.payload ?? {}, { ignoreUnknownFields: true }) : undefined;
  return { envelope, payload, subject, ack };
}

/** Fetches decoded events; acknowledge each once handled (explicit acks). */
export class EventConsumer {
  constructor(private readonly js: JetStreamClient, private readonly stream: string, private readonly durable: string) {}

  async fetch(max = 100, expiresMs = 2000): Promise<Event[]> {
    const consumer = await this.js.consumers.get(this.stream, this.durable);
    const out: Event[] = [];
    const messages = await consumer.fetch({ max_messages: max, expires: expiresMs });
    for await (const m of messages) {
      out.push(decodeEvent(m.subject, m.data, () => m.ack()));
    }
    return out;
  }
}

export { create };
