//! NATS with the shipped users and permissions (`deploy/nats/auth.conf`): a fresh
//! `nats-server` on its own port runs that file; the relay, the command service and a
//! projector connect with their own credentials and do their whole job (a command from
//! a client service over NATS reaches the event store, the stream and the read model).
//! Then every user tries every subject, publishing and subscribing: every forbidden
//! attempt is refused by the server, every allowed one goes through.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use crm_contracts::v1;
use crm_contracts::wire::{decode_reply, encode, Format};
use crm_domain::*;
use crm_eventstore::testing::TestDatabase;
use crm_integration_tests::Service;
use uuid::Uuid;

const USERS: [&str; 6] = [
    "admin",
    "command-service",
    "relay",
    "projector",
    "branch-system",
    "call-centre",
];

fn password(user: &str) -> String {
    format!("pw-{user}-{}", std::process::id())
}

fn env_name(user: &str) -> String {
    crm_bus::permissions::password_variable(user)
}

struct Nats {
    child: Child,
    port: u16,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nats {
    /// `nats-server` with JetStream and the shipped `auth.conf`, on a free port.
    async fn start() -> Self {
        let auth = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/nats/auth.conf");
        Self::start_with(&std::fs::read_to_string(auth).unwrap(), &USERS).await
    }

    /// `nats-server` with JetStream and `auth` (whose `users` have passwords set).
    async fn start_with(auth: &str, users: &[&str]) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("crm-nats-auth-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("js")).unwrap();
        std::fs::write(dir.join("auth.conf"), auth).unwrap();
        std::fs::write(
            dir.join("nats.conf"),
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{}\" }}\ninclude auth.conf\n",
                dir.join("js").display()
            ),
        )
        .unwrap();
        let mut server = Process::new("nats-server");
        server
            .arg("-c")
            .arg(dir.join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("nats.log")).unwrap());
        for u in users {
            server.env(env_name(u), password(u));
        }
        let child = server
            .spawn()
            .expect("nats-server (apt-get install nats-server)");
        let nats = Nats {
            child,
            port,
            _dir: tempdir::Dir(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while crm_bus::connect::connect(&nats.url("admin"), &Default::default())
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "nats-server did not start: {}",
                std::fs::read_to_string(nats._dir.0.join("nats.log"))
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(8)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        nats
    }

    fn url(&self, user: &str) -> String {
        format!("nats://{user}:{}@127.0.0.1:{}", password(user), self.port)
    }

    /// A client of `user` with its own inbox prefix, collecting the server's refusals.
    async fn client(&self, user: &str) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let client = async_nats::ConnectOptions::new()
            .custom_inbox_prefix(format!("_INBOX.{user}"))
            .event_callback(move |event| {
                let seen = seen.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        seen.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .user_and_password(user.to_string(), password(user))
            .connect(format!("nats://127.0.0.1:{}", self.port))
            .await
            .unwrap();
        (client, errors)
    }

    fn service_env(&self, user: &str) -> Vec<(&'static str, String)> {
        vec![
            ("CRM_NATS_URL", self.url(user)),
            ("CRM_NATS_INBOX", format!("_INBOX.{user}")),
        ]
    }
}

fn register(customer: CustomerId) -> Command {
    let phone = format!("+86 139 {:08}", customer.as_uuid().as_u128() % 100_000_000);
    crm_integration_tests::register_customer(customer, "Zhao Min", Some(phone), None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_run_with_their_own_users_and_nothing_more() {
    let nats = Nats::start().await;
    let db = TestDatabase::create().await;
    let store_env = |user: &str| {
        let mut env = nats.service_env(user);
        env.push(("CRM_STORE_URL", db.url.clone()));
        env.push(("CRM_READ_URL", db.url.clone()));
        env
    };
    let mut relay = Service::start("crm-relay", &[], &store_env("relay"));
    let mut service_env = store_env("command-service");
    service_env.push(("CRM_INTAKE", "CRM_INTAKE".into()));
    let mut service = Service::start(
        "crm-command-service",
        &["--http-addr", "127.0.0.1:0"],
        &service_env,
    );
    let mut projector = Service::start(
        "crm-projector",
        &["--http-addr", "127.0.0.1:0"],
        &store_env("projector"),
    );
    relay.wait_ready().await;
    service.wait_ready().await;
    projector.wait_ready().await;

    // A client service sends a command it is allowed over NATS.
    let (branch, _) = nats.client("branch-system").await;
    let customer = CustomerId::new(Uuid::now_v7());
    let meta = v1::CommandMeta {
        command_id: Uuid::now_v7().to_string(),
        actor: "service:branch-system".into(),
        correlation_id: None,
        causation_id: None,
        issued_at: Some(Utc::now().to_rfc3339()),
    };
    let body = encode(&meta, &register(customer), Format::Protobuf).unwrap();
    let reply = branch
        .request("crm.cmd.register_customer", body.into())
        .await
        .expect("the command service answers");
    let reply = decode_reply(&reply.payload, Format::Protobuf).unwrap();
    assert!(reply.accepted, "{reply:?}");
    through_the_intake(&branch).await;

    // Stored, published by the relay, projected by the projector: each with its user.
    let read = sqlx::PgPool::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT count(*) FROM rm_customers WHERE customer_id = $1")
                .bind(customer.to_string())
                .fetch_one(&read)
                .await
                .ok();
        if n == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the customer never reached the read model"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    every_user_against_every_subject(&nats).await;
}

/// Every user publishes and subscribes to every subject: what its permissions allow goes
/// through, everything else is refused by the server (counted).
async fn every_user_against_every_subject(nats: &Nats) {
    let publish = [
        "crm.cmd.register_customer",
        "crm.cmd.record_contact",
        "crm.cmd.erase_customer_data",
        "crm.events.customer.0.CustomerRegistered",
        "crm.dlq.projectors.0",
        "crm.intake.register_customer",
        "crm.intake.erase_customer_data",
        "crm.outcomes.register_customer.x",
        "$JS.API.STREAM.DELETE.CRM_EVENTS",
        "$JS.API.STREAM.PURGE.CRM_EVENTS",
        "$JS.API.CONSUMER.MSG.NEXT.CRM_EVENTS.projectors-0",
    ];
    let subscribe = [
        "crm.cmd.>",
        "crm.events.>",
        "_INBOX.>",
        "_INBOX.relay.>",
        "$SRV.>",
        ">",
    ];
    let may_publish = |user: &str, subject: &str| -> bool {
        match user {
            "admin" => true,
            "relay" => subject.starts_with("crm.events."),
            "projector" => {
                subject.starts_with("crm.dlq.")
                    || subject.starts_with("$JS.API.CONSUMER.MSG.NEXT.CRM_EVENTS.")
            }
            "command-service" => subject.starts_with("crm.outcomes."),
            "branch-system" => {
                subject == "crm.cmd.register_customer" || subject == "crm.intake.register_customer"
            }
            "call-centre" => subject == "crm.cmd.record_contact",
            _ => false,
        }
    };
    let may_subscribe = |user: &str, subject: &str| -> bool {
        match user {
            "admin" => true,
            "command-service" => subject == "crm.cmd.>" || subject == "$SRV.>",
            "relay" => subject == "_INBOX.relay.>",
            _ => false,
        }
    };
    let mut results: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    // The operators' user last, and without the destructive attempts (it may delete).
    let order = USERS.iter().skip(1).chain(USERS.iter().take(1));
    for user in order.copied() {
        if user == "admin" {
            // The stream survived every attempt on it so far.
            let (admin, _) = nats.client("admin").await;
            let js = async_nats::jetstream::new(admin);
            let mut stream = js.get_stream("CRM_EVENTS").await.unwrap();
            assert!(stream.info().await.unwrap().state.messages >= 1);
        }
        let (client, errors) = nats.client(user).await;
        for (op, subject) in publish
            .iter()
            .filter(|s| user != "admin" || !s.starts_with("$JS.API.STREAM."))
            .map(|s| ("publish", *s))
            .chain(subscribe.iter().map(|s| ("subscribe", *s)))
        {
            errors.lock().unwrap().clear();
            let _sub;
            let allowed = if op == "publish" {
                // An empty body: nothing a service would act on, should it get through.
                client
                    .publish(subject.to_string(), "".into())
                    .await
                    .unwrap();
                may_publish(user, subject)
            } else {
                _sub = client.subscribe(subject.to_string()).await.unwrap();
                may_subscribe(user, subject)
            };
            client.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            let refused = errors
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.to_lowercase().contains("permissions violation"));
            let entry = results.entry(user).or_default();
            if allowed {
                assert!(!refused, "{user} {op} {subject} was refused: {errors:?}");
                entry.2 += 1;
            } else {
                assert!(refused, "{user} {op} {subject} went through");
                entry.0 += 1;
                entry.1 += 1;
            }
        }
    }
    let (forbidden, refused): (usize, usize) =
        results.values().fold((0, 0), |a, r| (a.0 + r.0, a.1 + r.1));
    println!("per user (forbidden, refused, allowed): {results:?}");
    println!("NATS: {forbidden} forbidden attempts, {refused} refused by the server");
    assert_eq!(forbidden, refused);
}

/// A client service publishes a command to the intake (JetStream, its own inbox for the
/// acknowledgement) and reads its outcome by subject (direct get): the command service
/// took it through its own user.
async fn through_the_intake(client: &async_nats::Client) {
    let meta = v1::CommandMeta {
        command_id: Uuid::now_v7().to_string(),
        actor: "service:branch-system".into(),
        ..Default::default()
    };
    let body = encode(
        &meta,
        &register(CustomerId::new(Uuid::now_v7())),
        Format::Protobuf,
    )
    .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", meta.command_id.as_str());
    let js = async_nats::jetstream::new(client.clone());
    js.publish_with_headers("crm.intake.register_customer", headers, body.into())
        .await
        .unwrap()
        .await
        .expect("the intake stores the command");
    let outcome = format!(
        "$JS.API.DIRECT.GET.CRM_OUTCOMES.crm.outcomes.register_customer.{}",
        meta.command_id
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = client.request(outcome.clone(), "".into()).await.unwrap();
        if let Ok(reply) = decode_reply(&answer.payload, Format::Protobuf) {
            if !answer.payload.is_empty() {
                assert!(reply.accepted, "{reply:?}");
                assert_eq!(reply.command_id, meta.command_id);
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no outcome of the intake's command"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Another team's event consumer, under a deployment's own prefix and stream (`crm nats
/// auth-conf --prefix acme.crm --stream ACME_EVENTS --consumer fraud-watch`): it reads
/// the stream through its durable consumer, and may do nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_consumer_reads_the_stream_through_its_own_consumer_only() {
    use async_nats::jetstream::{self, consumer::pull};
    use futures::StreamExt as _;
    let subjects = crm_bus::Subjects::new("acme.crm");
    let auth = crm_bus::permissions::auth_conf(&crm_bus::permissions::Deployment {
        subjects: &subjects,
        stream: "ACME_EVENTS",
        consumers: &["fraud-watch".to_string()],
        intake: "ACME_INTAKE",
        outcomes: "ACME_OUTCOMES",
    });
    let mut users = USERS.to_vec();
    users.push("fraud-watch");
    let nats = Nats::start_with(&auth, &users).await;
    let sent = fill_stream(&nats, &subjects, "ACME_EVENTS").await;

    let (client, errors) = nats.client("fraud-watch").await;
    let js = jetstream::new(client.clone());
    let stream = js.get_stream("ACME_EVENTS").await.unwrap();
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            "fraud-watch",
            pull::Config {
                durable_name: Some("fraud-watch".into()),
                filter_subject: subjects.all_events(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut read = Vec::new();
    let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        read.push(m.subject.to_string());
        m.ack().await.unwrap();
    }
    assert_eq!(read, sent, "the consumer reads every event, in order");

    let other = stream
        .create_consumer(pull::Config {
            durable_name: Some("someone-else".into()),
            ..Default::default()
        })
        .await;
    assert!(other.is_err(), "a consumer of another name was created");
    errors.lock().unwrap().clear();
    for subject in [
        subjects.command("register_customer"),
        subjects.event("customer-1", "CustomerRegistered"),
        "$JS.API.STREAM.DELETE.ACME_EVENTS".into(),
        "$JS.API.STREAM.PURGE.ACME_EVENTS".into(),
        "$JS.API.CONSUMER.DELETE.ACME_EVENTS.fraud-watch".into(),
    ] {
        let publish = client.publish(subject.clone(), "".into());
        publish.await.unwrap();
        assert!(
            refused(&client, &errors).await,
            "fraud-watch published to {subject}"
        );
    }
    let _sub = client.subscribe(subjects.all_events()).await.unwrap();
    assert!(
        refused(&client, &errors).await,
        "fraud-watch subscribed to the events outside JetStream"
    );
}

/// Whether the server refused what the client just did (its errors since the last ask).
async fn refused(client: &async_nats::Client, errors: &Mutex<Vec<String>>) -> bool {
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let seen = std::mem::take(&mut *errors.lock().unwrap());
    seen.iter()
        .any(|e| e.to_lowercase().contains("permissions violation"))
}

/// A stream `name` on the events of `subjects`, holding three events (sent as the
/// operators' user); their subjects, in order.
async fn fill_stream(nats: &Nats, subjects: &crm_bus::Subjects, name: &str) -> Vec<String> {
    use async_nats::jetstream;
    let (admin, _) = nats.client("admin").await;
    let js = jetstream::new(admin);
    js.create_stream(jetstream::stream::Config {
        name: name.into(),
        subjects: vec![subjects.all_events()],
        ..Default::default()
    })
    .await
    .unwrap();
    let sent: Vec<String> = (0..3)
        .map(|_| {
            subjects.event(
                &format!("customer-{}", Uuid::now_v7()),
                "CustomerRegistered",
            )
        })
        .collect();
    for s in &sent {
        js.publish(s.clone(), "{}".into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    sent
}
