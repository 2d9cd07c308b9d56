//! Durable ingestion as a call centre uses it: 10,000 commands published to the intake
//! while the command service is down (2,500 customers, each registered, given an owner,
//! contacted, then released, every hundredth given its owner a second time instead); the
//! service started, SIGKILLed a third of the way through, started again. Every command is
//! decided exactly once, in order per customer (an assignment before its registration
//! would be refused), and has exactly one outcome; the intake ends empty.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use crm_bus::intake::IntakeSpec;
use crm_bus::Subjects;
use crm_contracts::v1;
use crm_contracts::wire::{decode_reply, encode, Format};
use crm_domain::customer::*;
use crm_domain::manager::{ManagerCommand, RegisterManager};
use crm_domain::*;
use crm_eventstore::postgres::PgEventStore;
use crm_eventstore::{Log, LogPosition};
use crm_integration_tests::{Platform, Service};
use futures::StreamExt;
use uuid::Uuid;

const CUSTOMERS: usize = 2_500;

fn meta() -> v1::CommandMeta {
    v1::CommandMeta {
        command_id: Uuid::now_v7().to_string(),
        actor: "service:call-centre".into(),
        ..Default::default()
    }
}

/// The four commands of customer `i`, in the order they must be decided.
fn day_of(i: usize, manager: ManagerId) -> Vec<Command> {
    let customer = CustomerId::new(Uuid::now_v7());
    let register = crm_integration_tests::register_customer(
        customer,
        &format!("Customer {i}"),
        Some(format!("+86138{i:08}")),
        None,
    );
    let assign = |reason: &str| {
        Command::Customer(CustomerCommand::AssignOwner(AssignOwner {
            customer_id: customer,
            manager_id: manager,
            reason: reason.into(),
        }))
    };
    let contact = Command::Customer(CustomerCommand::RecordContact(RecordContact {
        customer_id: customer,
        contact_id: ContactId::new(Uuid::now_v7()),
        manager_id: manager,
        channel: ContactChannel::Phone,
        direction: Direction::Outbound,
        outcome: ContactOutcome::Reached,
        summary: None,
        next_follow_up_at: None,
        occurred_at: None,
    }));
    let last = if i.is_multiple_of(100) {
        assign("again")
    } else {
        Command::Customer(CustomerCommand::ReleaseToPool(ReleaseToPool {
            customer_id: customer,
            reason: "end of campaign".into(),
        }))
    };
    vec![register, assign("first owner"), contact, last]
}

/// Publish every command to the intake (protobuf, `Nats-Msg-Id` = command id), each
/// acknowledged by the stream.
async fn publish(js: &jetstream::Context, subjects: &Subjects, commands: &[Command]) {
    let mut acks = futures::stream::FuturesOrdered::new();
    for command in commands {
        let meta = meta();
        let body = encode(&meta, command, Format::Protobuf).unwrap();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", meta.command_id.as_str());
        let ack = js
            .publish_with_headers(subjects.intake(command.name()), headers, body.into())
            .await
            .unwrap();
        acks.push_back(std::future::IntoFuture::into_future(ack));
        if acks.len() >= 256 {
            acks.next().await.unwrap().unwrap();
        }
    }
    while let Some(ack) = acks.next().await {
        ack.unwrap();
    }
}

/// A stream's state now.
async fn stream_state(js: &jetstream::Context, name: &str) -> jetstream::stream::State {
    js.get_stream(name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .clone()
}

/// Wait until the outcomes stream holds `count` outcomes (or fail after `within`).
async fn wait_for_outcomes(js: &jetstream::Context, name: &str, count: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let state = stream_state(js, name).await;
        if state.messages >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} outcomes of {count} after {within:?}",
            state.messages
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A manager who may hold every customer of the test, over request/reply.
async fn register_a_manager(nats: &async_nats::Client, subjects: &Subjects) -> ManagerId {
    let manager = ManagerId::new(Uuid::now_v7());
    let register = Command::Manager(ManagerCommand::Register(RegisterManager {
        manager_id: manager,
        name: "Li Wei".into(),
        role: ManagerRole::Manager,
        team: "east-1".parse().unwrap(),
        region: "east".parse().unwrap(),
        branch: "sh-01".parse().unwrap(),
        holding_limit: 5_000,
    }));
    let body = encode(&meta(), &register, Format::Protobuf).unwrap();
    let answer = nats
        .request(subjects.command("register_manager"), body.into())
        .await
        .unwrap();
    assert!(
        decode_reply(&answer.payload, Format::Protobuf)
            .unwrap()
            .accepted
    );
    manager
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_published_while_the_service_is_down_are_each_decided_once() {
    let platform = Platform::new().await;
    let subjects = platform.stream.spec.subjects.clone();
    let intake = format!("{}_INTAKE", platform.stream.spec.name);
    let outcomes = format!("{}_OUTCOMES", platform.stream.spec.name);
    let mut env = platform.env();
    env.push(("CRM_INTAKE", intake.clone()));
    env.push(("CRM_OUTCOMES", outcomes.clone()));
    let nats = crm_bus::testing::connect().await;
    let js = jetstream::new(nats.clone());
    // The streams exist before any service runs (as deployed: docs/api.md).
    IntakeSpec::new(&intake, &outcomes, subjects.clone())
        .ensure(&js)
        .await
        .unwrap();

    // The manager, over request/reply while the service runs; then it stops.
    let mut service = Service::start("crm-command-service", &["--http-addr", "127.0.0.1:0"], &env);
    service.wait_ready().await;
    let manager = register_a_manager(&nats, &subjects).await;
    service.signal("TERM");
    service
        .wait_exit(Duration::from_secs(30))
        .await
        .expect("stopped");

    // 10,000 commands while it is down.
    let commands: Vec<Command> = (0..CUSTOMERS).flat_map(|i| day_of(i, manager)).collect();
    publish(&js, &subjects, &commands).await;
    let total = commands.len() as u64;
    assert_eq!(stream_state(&js, &intake).await.messages, total);

    // Started, SIGKILLed a third of the way, started again.
    let mut service = Service::start("crm-command-service", &["--http-addr", "127.0.0.1:0"], &env);
    service.wait_ready().await;
    let started = Instant::now();
    wait_for_outcomes(&js, &outcomes, total / 3, Duration::from_secs(180)).await;
    service.kill();
    let at_kill = stream_state(&js, &outcomes).await.messages;
    let mut service = Service::start("crm-command-service", &["--http-addr", "127.0.0.1:0"], &env);
    service.wait_ready().await;
    wait_for_outcomes(&js, &outcomes, total, Duration::from_secs(300)).await;
    let took = started.elapsed();
    eprintln!(
        "intake: {total} commands decided in {:.1} s with a SIGKILL at {at_kill} outcomes ({:.0} commands/s)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );

    // Exactly one outcome per command, never stored twice; the intake is empty.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let state = stream_state(&js, &outcomes).await;
    assert_eq!((state.messages, state.last_sequence), (total, total));
    let left = js
        .get_stream(&intake)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(left, 0, "commands left in the intake");
    check_outcomes(&js, &outcomes, &subjects, total).await;
    check_store(&platform).await;
    service.signal("TERM");
}

/// Every outcome: accepted, but for the hundredth customers' second assignment.
async fn check_outcomes(js: &jetstream::Context, name: &str, subjects: &Subjects, total: u64) {
    let stream = js.get_stream(name).await.unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            filter_subject: subjects.all_outcomes(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let (mut accepted, mut refused, mut duplicates) = (0, Vec::new(), 0);
    for _ in 0..total {
        let m = messages.next().await.unwrap().unwrap();
        let reply = decode_reply(&m.payload, Format::Protobuf).unwrap();
        assert!(m.subject.ends_with(&reply.command_id), "{}", m.subject);
        if reply.accepted {
            accepted += 1;
            duplicates += u32::from(reply.duplicate);
        } else {
            refused.push(reply.problem.unwrap().code);
        }
        m.ack().await.unwrap();
    }
    eprintln!("intake: {accepted} accepted ({duplicates} answered again after the SIGKILL)");
    let expected_refusals = CUSTOMERS.div_ceil(100);
    assert_eq!(refused.len(), expected_refusals, "{refused:?}");
    assert!(
        refused.iter().all(|c| c == "ownership.already_owned"),
        "{refused:?}"
    );
}

/// The store holds each command's events once.
async fn check_store(platform: &Platform) {
    let store = PgEventStore::connect(&platform.db.url, 2).await.unwrap();
    let events = store.read_all(LogPosition::START, 1_000_000).await.unwrap();
    let count = |t: &str| events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(count("CustomerRegistered"), CUSTOMERS);
    assert_eq!(count("OwnerAssigned"), CUSTOMERS);
    assert_eq!(count("ContactRecorded"), CUSTOMERS);
    assert_eq!(count("ReleasedToPool"), CUSTOMERS - CUSTOMERS.div_ceil(100));
    let mut commands: Vec<Uuid> = events.iter().map(|e| e.metadata.command_id).collect();
    commands.dedup();
    let distinct = commands.len();
    commands.sort();
    commands.dedup();
    assert_eq!(
        distinct,
        commands.len(),
        "a command's events are apart in the log"
    );
}
