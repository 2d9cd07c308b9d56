//! Where a command is handled: load the aggregate (cached), look up what the decision
//! needs from other aggregates, call the pure `decide`, turn the events into one atomic
//! [`AppendRequest`] (with its unique-key and holding-limit guards), and append it
//! through group commit. A store conflict means another command got there first: the
//! command is decided again on fresh state, so the caller only ever sees a domain
//! refusal naming the rule, or success.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use crm_domain::customer::{AssignByPolicy, Timer};
use crm_domain::policy::{self, matching_rule, CustomerFacts, PolicyCommand, POLICY_STREAM};
pub use crm_domain::Command;
use crm_domain::{
    customer, manager, Actor, CustomerCommand, CustomerEvent, CustomerId, CustomerState,
    DecisionContext, DomainError, DuplicateMatch, ManagerCommand, ManagerEvent, ManagerId,
    ManagerState, Policy, TeamId, UniqueKey,
};
use crm_eventstore::{
    AppendError, AppendOutcome, AppendRequest, CommandMeta, Conflict, CounterChange, EventStore,
    ExpectedVersion, NewEvent, NewSubjectKey, StoreError, StreamWrite, UniqueClaim,
};
use crm_privacy::{PrivacyError, Vault};
use crm_telemetry::names;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cache::{Head, StateCache};
use crate::counters::{self, claims_key, counted_key, turn_key, Receiver};
use crate::group_commit::{GroupCommitConfig, GroupCommitter};
use crate::lookups::{Lookups, DIRECTORY_TTL, POLICY_TTL};

/// How many times a command is decided again after losing a race.
const MAX_ATTEMPTS: usize = 8;

/// Who asks, and how this command relates to others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub command_id: Uuid,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub actor: Actor,
    pub issued_at: DateTime<Utc>,
}

impl Envelope {
    /// A new command issued now by `actor`, correlated with itself.
    pub fn new(actor: Actor, issued_at: DateTime<Utc>) -> Self {
        let command_id = Uuid::now_v7();
        Self {
            command_id,
            correlation_id: command_id,
            causation_id: None,
            actor,
            issued_at,
        }
    }
}

/// One event written for an accepted command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub stream_id: String,
    pub stream_version: u64,
}

/// The answer to an accepted command (or to a repeat of one: `duplicate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub command_id: Uuid,
    pub duplicate: bool,
    pub events: Vec<AcceptedEvent>,
}

/// Why a command was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A business rule refused it (for the caller).
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// The command id was used before for a different command.
    #[error("command id {0} was already used for a different command")]
    CommandIdReused(Uuid),
    /// It kept losing races against concurrent commands on the same data.
    #[error("the command conflicted with concurrent changes {0} times; retry it")]
    Contended(usize),
    /// Storage failed (for retries and alerts); the command may be retried with the same id.
    #[error("storage unavailable: {0}")]
    Unavailable(#[from] StoreError),
    /// The event store refused the command's own data; retrying cannot help. (The
    /// ingress refuses such text first, naming the field: this is the second line.)
    #[error("{0}")]
    Unstorable(String),
}

impl CommandError {
    /// Stable code, as for domain errors.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Refused(e) => e.code(),
            CommandError::CommandIdReused(_) => "command.id_reused",
            CommandError::Contended(_) => "command.contended",
            CommandError::Unavailable(_) => "storage.unavailable",
            CommandError::Unstorable(_) => "command.unstorable",
        }
    }
}

/// How long the handler reuses a customer's key read from the store.
const VAULT_KEY_TTL: std::time::Duration = std::time::Duration::from_secs(60);

fn privacy_error(customer: CustomerId, e: PrivacyError) -> CommandError {
    match e {
        PrivacyError::Erased(_) => CommandError::Refused(DomainError::PersonalDataErased(customer)),
        PrivacyError::Store(s) => CommandError::Unavailable(s),
        other => CommandError::Unavailable(StoreError::Corrupt(other.to_string())),
    }
}

/// Whence a decision's state came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Read from the store, or cached from what was read and decided since.
    Stored,
    /// Assumed (a registration's customer, believed new): the append checks it.
    Assumed,
}

pub fn customer_stream(id: CustomerId) -> String {
    format!("customer-{id}")
}

pub fn manager_stream(id: ManagerId) -> String {
    format!("manager-{id}")
}

pub use crate::counters::holdings_key;

#[derive(Debug, Clone)]
pub struct HandlerConfig {
    pub group_commit: GroupCommitConfig,
    /// Customer states kept in memory (the most recently used; a tenth as many managers).
    /// About 1 KiB each: the default holds W1 whole and costs ~100 MiB at most.
    pub cache_capacity: usize,
    /// How long the ownership policy read from the store is trusted: a version published
    /// by another process applies here within this time (decisions that depend on the
    /// policy for their outcome check its version when they commit).
    pub policy_ttl: std::time::Duration,
    /// How long the list of registered managers is trusted (a manager registered by
    /// another process becomes a candidate for assignment by policy within this time).
    pub directory_ttl: std::time::Duration,
    /// Secret of the duplicate-check index: normalised phones, e-mails and registration
    /// numbers are stored as keyed hashes (`crm_privacy::blind_index`), never in clear.
    /// Every command service and scheduler of one store must use the same (their mains
    /// read `CRM_INDEX_KEY`; the default is [`DEFAULT_INDEX_KEY`]).
    pub index_key: String,
}

impl Default for HandlerConfig {
    fn default() -> Self {
        Self {
            group_commit: GroupCommitConfig::default(),
            cache_capacity: DEFAULT_STATE_CACHE,
            policy_ttl: POLICY_TTL,
            directory_ttl: DIRECTORY_TTL,
            index_key: DEFAULT_INDEX_KEY.to_string(),
        }
    }
}

/// Customer states cached by default (`HandlerConfig::cache_capacity`).
pub const DEFAULT_STATE_CACHE: usize = 100_000;

/// The index secret when `CRM_INDEX_KEY` is not set (the embedded demo, tests): the
/// index is still not readable as text, but anyone with this source can test guesses
/// against it. Set `CRM_INDEX_KEY` in production (docs/operations.md); the command
/// service refuses to start without it unless authentication is off.
pub const DEFAULT_INDEX_KEY: &str = "crm-development-index-key";

/// The index secret from its setting: `None` (unset) is the development key, allowed
/// only when `development` (authentication off); a placeholder from an example is never.
pub fn index_key(setting: Option<&str>, development: bool) -> Result<String, String> {
    match setting.filter(|k| !k.is_empty()) {
        Some(k) if crm_auth::is_placeholder(k.as_bytes()) => Err(
            "CRM_INDEX_KEY is a placeholder from an example: generate one (openssl rand -hex 32)"
                .into(),
        ),
        Some(k) if k.len() < 16 => Err("CRM_INDEX_KEY must be at least 16 bytes".into()),
        Some(k) => Ok(k.to_string()),
        None if development => Ok(DEFAULT_INDEX_KEY.to_string()),
        None => Err(
            "CRM_INDEX_KEY is not set: the duplicate-check index of a production store needs its own secret (openssl rand -hex 32); CRM_AUTH=off runs with the development key"
                .into(),
        ),
    }
}

/// The command side's application service; cheap to clone.
#[derive(Clone)]
pub struct CommandHandler<S> {
    pub(crate) store: S,
    committer: GroupCommitter,
    customers: Arc<StateCache<CustomerState>>,
    pub(crate) managers: Arc<StateCache<ManagerState>>,
    pub(crate) lookups: Arc<Lookups>,
    pub(crate) config: HandlerConfig,
    /// Customers' keys: personal fields are encrypted before an append and decrypted
    /// when a customer is loaded (crypto-shredding, `libs/privacy`).
    vault: Arc<Vault<S>>,
}

/// The state a decision was made on, and what the append must re-check.
struct Decided {
    events: Vec<NewEvent>,
    request: AppendRequest,
    /// A new customer's state after the decision, cached only once the append committed
    /// (see [`CommandHandler::remember_decided`]).
    assumed: Option<(String, CustomerState, Head)>,
}

/// What a customer decision knows besides the customer's state, and what its append
/// must guard.
struct Known {
    ctx: DecisionContext,
    /// Streams that must not change before the append commits, at the versions read.
    guards: Vec<(String, u64)>,
    /// Whose holdings the decision counts against.
    receiver: Option<Receiver>,
    /// For assignment by policy: the matching rule's team as read.
    team: Option<(TeamId, crate::lookups::Team)>,
}

impl Known {
    /// When the policy chose the manager, guard that manager like an explicit receiver;
    /// the team's round-robin turn to advance.
    fn policy_choice(&mut self, events: &[CustomerEvent]) -> Option<String> {
        let (Some((team_id, t)), Some(CustomerEvent::OwnerAssigned(a))) =
            (&self.team, events.first())
        else {
            return None;
        };
        let version = t.versions.iter().find(|(m, _)| *m == a.manager_id);
        let view = t
            .candidates
            .members
            .iter()
            .find(|c| c.view.id == a.manager_id);
        if let (Some((_, version)), Some(c)) = (version, view) {
            self.guards.push((manager_stream(a.manager_id), *version));
            self.receiver = Some(Receiver {
                manager: a.manager_id,
                limit: c.view.holding_limit,
            });
        }
        Some(turn_key(team_id))
    }
}

impl<S: EventStore + Clone> CommandHandler<S> {
    pub fn new(store: S, config: HandlerConfig) -> Self {
        Self {
            committer: GroupCommitter::start(store.clone(), config.group_commit),
            vault: Arc::new(Vault::new(store.clone(), VAULT_KEY_TTL)),
            store,
            customers: Arc::new(StateCache::new(config.cache_capacity, "customer")),
            managers: Arc::new(StateCache::new(config.cache_capacity / 10 + 16, "manager")),
            lookups: Arc::default(),
            config,
        }
    }

    /// How a duplicate-check key is stored: its kind and a keyed hash of its value.
    fn stored_key(&self, key: &UniqueKey) -> String {
        format!(
            "{}:{}",
            key.kind(),
            crm_privacy::blind_index(self.config.index_key.as_bytes(), key.as_str())
        )
    }

    /// The vault this handler encrypts with (shared with whoever reads personal data in
    /// the same process).
    pub fn vault(&self) -> &Arc<Vault<S>> {
        &self.vault
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// Decide and store one command.
    pub async fn handle(
        &self,
        envelope: Envelope,
        command: Command,
    ) -> Result<Accepted, CommandError> {
        let started = Instant::now();
        let name = command.name();
        let mut result = self.handle_inner(&envelope, &command).await;
        if let (Command::Customer(CustomerCommand::Register(r)), Ok(accepted)) =
            (&command, &mut result)
        {
            self.assign_on_registration(&envelope, r.customer_id, accepted)
                .await;
        }
        if let (Command::Customer(CustomerCommand::EraseCustomerData(e)), Ok(_)) =
            (&command, &result)
        {
            // The erasure is recorded; now destroy the key. A repeat of the command (same
            // id) lands here again, so a failure here is retried by retrying the command.
            let stream = customer_stream(e.customer_id);
            let erased = self.vault.erase(&stream).await;
            // After the vault marked the subject erased (see `committed`).
            self.customers.remove(&stream);
            if let Err(err) = erased {
                result = Err(privacy_error(e.customer_id, err));
            }
        }
        let (outcome, code) = match &result {
            Ok(a) if a.duplicate => ("duplicate", "none"),
            Ok(_) => ("accepted", "none"),
            Err(CommandError::Unavailable(_)) => ("failed", "storage.unavailable"),
            Err(e) => ("refused", e.code()),
        };
        metrics::counter!(names::COMMANDS_TOTAL, "command" => name, "outcome" => outcome, "code" => code).increment(1);
        metrics::histogram!(names::COMMAND_DURATION_SECONDS, "command" => name)
            .record(started.elapsed().as_secs_f64());
        match &result {
            Ok(a) => {
                tracing::debug!(command = name, command_id = %envelope.command_id, events = a.events.len(), duplicate = a.duplicate, "accepted")
            }
            Err(CommandError::Unavailable(e)) => {
                tracing::error!(command = name, command_id = %envelope.command_id, error = %e, "command failed")
            }
            Err(e) => {
                tracing::info!(command = name, command_id = %envelope.command_id, code = e.code(), reason = %e, "command refused")
            }
        }
        result
    }

    async fn handle_inner(
        &self,
        envelope: &Envelope,
        command: &Command,
    ) -> Result<Accepted, CommandError> {
        let fingerprint = fingerprint(self.config.index_key.as_bytes(), command);
        // Cached state may be speculative (events decided but not yet committed) or stale.
        // That is safe for acceptance (the append's expected versions catch it), not for
        // refusal: a refusal is only returned once confirmed on committed state.
        let mut fresh = false;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                metrics::counter!(names::COMMAND_RETRIES_TOTAL, "command" => command.name())
                    .increment(1);
            }
            let decided = match command {
                Command::Customer(c) => {
                    self.decide_customer(envelope, c, &fingerprint, fresh).await
                }
                Command::Manager(c) => self.decide_manager(envelope, c, &fingerprint, fresh).await,
                // The policy stream is always read whole (it is short): never stale.
                Command::Policy(c) => self.decide_policy(envelope, c, &fingerprint).await,
            };
            let decided = match decided {
                Ok(d) => d,
                Err(CommandError::Refused(_)) if !fresh => {
                    fresh = true;
                    continue;
                }
                Err(CommandError::Refused(e)) => return self.refused(envelope, e).await,
                Err(e) => return Err(e),
            };
            if decided.events.is_empty() {
                return Ok(Accepted {
                    command_id: envelope.command_id,
                    duplicate: false,
                    events: Vec::new(),
                });
            }
            let new_keys = decided.request.new_keys.clone();
            let appended = self.committer.append(decided.request).await;
            if matches!(&appended, Ok(o) if !o.duplicate) {
                self.committed(new_keys, decided.assumed);
            } else {
                // The speculative state cached by the decision did not become history.
                self.invalidate(command);
            }
            match appended {
                Ok(outcome) => {
                    if !outcome.duplicate {
                        for e in &decided.events {
                            metrics::counter!(names::EVENTS_APPENDED_TOTAL, "event_type" => e.event_type.clone()).increment(1);
                        }
                    }
                    return Ok(accepted(outcome));
                }
                Err(AppendError::Conflict(Conflict::CommandIdReused { command_id })) => {
                    return Err(CommandError::CommandIdReused(command_id))
                }
                Err(AppendError::Conflict(c)) => {
                    tracing::debug!(command = command.name(), conflict = %c, attempt, "lost a race; deciding again");
                    fresh = true;
                }
                Err(AppendError::Store(e)) => return Err(CommandError::Unavailable(e)),
                Err(AppendError::Unstorable(reason)) => {
                    return Err(CommandError::Unstorable(reason))
                }
            }
        }
        Err(CommandError::Contended(MAX_ATTEMPTS))
    }

    /// A refusal of a command that was accepted before (a retry after the state moved
    /// on) is answered with the first outcome: same id, same answer.
    async fn refused(
        &self,
        envelope: &Envelope,
        error: DomainError,
    ) -> Result<Accepted, CommandError> {
        match self.store.command_outcome(envelope.command_id).await? {
            Some(outcome) => Ok(accepted(AppendOutcome {
                duplicate: true,
                ..outcome
            })),
            None => Err(CommandError::Refused(error)),
        }
    }

    /// What an append that committed made true: the new keys it stored, a new
    /// customer's state (unless a later decision cached a newer one, or this process
    /// erased the customer meanwhile: then neither its key nor its data is kept).
    fn committed(
        &self,
        new_keys: Vec<NewSubjectKey>,
        assumed: Option<(String, CustomerState, Head)>,
    ) {
        let mut kept = true;
        for k in &new_keys {
            kept &= self.vault.stored(k);
        }
        if let (true, Some((stream, state, head))) = (kept, assumed) {
            self.customers
                .put_if_newer(stream.clone(), Arc::new(state), head);
            // An erasure marks the subject before it empties the cache: either it is
            // marked now, or its emptying comes after this put.
            if self.vault.erased_here(&stream) {
                self.customers.remove(&stream);
            }
        }
    }

    fn invalidate(&self, command: &Command) {
        match command {
            Command::Customer(c) => {
                self.customers.remove(&customer_stream(c.customer_id()));
                if let Some(m) = target_manager(c) {
                    self.managers.remove(&manager_stream(m));
                }
            }
            Command::Manager(c) => self.managers.remove(&manager_stream(c.manager_id())),
            Command::Policy(_) => self.lookups.forget_policy(),
        }
    }

    /// A customer registered without an owner is assigned by policy right away when the
    /// policy says so: a follow-up command with an id derived from the registration's
    /// (so a retried registration never assigns twice), caused by it, decided by the
    /// policy. Its events join the registration's answer; a refusal (no rule, nobody
    /// under the limit) leaves the customer in the pool and is logged and counted.
    async fn assign_on_registration(
        &self,
        envelope: &Envelope,
        customer_id: CustomerId,
        accepted: &mut Accepted,
    ) {
        let policy = match self.policy(false).await {
            Ok((p, _)) => p,
            Err(e) => {
                tracing::warn!(customer_id = %customer_id, error = %e, "policy unavailable; customer left unassigned");
                return;
            }
        };
        if !policy.document.assign_on_registration || policy.document.rules.is_empty() {
            return;
        }
        let follow_up = Envelope {
            command_id: Uuid::new_v5(
                &envelope.command_id,
                b"assign_by_policy after register_customer",
            ),
            correlation_id: envelope.correlation_id,
            causation_id: Some(envelope.command_id),
            actor: Actor::system("policy"),
            issued_at: envelope.issued_at,
        };
        let command = Command::Customer(CustomerCommand::AssignByPolicy(AssignByPolicy {
            customer_id,
            reason: Some("assigned on registration".into()),
        }));
        match Box::pin(self.handle(follow_up, command)).await {
            Ok(a) => accepted.events.extend(a.events),
            Err(e) => {
                tracing::info!(customer_id = %customer_id, code = e.code(), reason = %e, "not assigned on registration; the customer stays in the pool")
            }
        }
    }

    /// Cache a decided state before its append (the next command on this customer need
    /// not wait for it: its own append checks the version). A state decided on an
    /// assumed (new) customer is answered instead, to cache once the append committed: a
    /// customer that does exist would be cached with this registration's data at a
    /// version the store really has, for commands to decide on until the append failed.
    fn remember_decided(
        &self,
        source: Source,
        stream: String,
        state: CustomerState,
        head: Head,
    ) -> Option<(String, CustomerState, Head)> {
        match source {
            Source::Stored => {
                self.customers.put(stream, Arc::new(state), head);
                None
            }
            Source::Assumed => Some((stream, state, head)),
        }
    }

    /// The customer's state, or for a registration decided the first time and not in
    /// the cache, a customer that does not exist yet, without reading its stream: the
    /// append expects the stream empty, so a customer that does exist is a conflict,
    /// decided again on what is stored (and refused, or answered as the duplicate it
    /// is). One round trip saved on every registration.
    async fn load_or_assume_new(
        &self,
        command: &CustomerCommand,
        fresh: bool,
    ) -> Result<(Arc<CustomerState>, Head, Source), CommandError> {
        let id = command.customer_id();
        if !fresh && matches!(command, CustomerCommand::Register(_)) {
            return Ok(match self.customers.get(&customer_stream(id)) {
                Some((state, head)) => (state, head, Source::Stored),
                None => (
                    Arc::new(CustomerState::default()),
                    Head::new(0, None),
                    Source::Assumed,
                ),
            });
        }
        let (state, head) = self.load_customer(id).await?;
        Ok((state, head, Source::Stored))
    }

    async fn load_customer(
        &self,
        id: CustomerId,
    ) -> Result<(Arc<CustomerState>, Head), CommandError> {
        let stream = customer_stream(id);
        if let Some(hit) = self.customers.get(&stream) {
            return Ok(hit);
        }
        let mut state = CustomerState::default();
        let events = self.store.read_stream(&stream, 0).await?;
        let head = stream_head(&events);
        for e in &events {
            let mut payload = e.payload.clone();
            self.vault
                .open(&stream, &e.event_type, &mut payload)
                .await
                .map_err(|err| privacy_error(id, err))?;
            let event = CustomerEvent::decode(&e.event_type, e.schema_version, &payload).map_err(
                |err| {
                    StoreError::Corrupt(format!(
                        "{} v{} in {stream}: {err}",
                        e.event_type, e.stream_version
                    ))
                },
            )?;
            state.apply(&event);
        }
        let state = Arc::new(state);
        self.customers.put(stream, state.clone(), head);
        Ok((state, head))
    }

    pub(crate) async fn load_manager(
        &self,
        id: ManagerId,
    ) -> Result<(Arc<ManagerState>, Head), CommandError> {
        let stream = manager_stream(id);
        if let Some(hit) = self.managers.get(&stream) {
            return Ok(hit);
        }
        let mut state = ManagerState::default();
        let events = self.store.read_stream(&stream, 0).await?;
        let head = stream_head(&events);
        for e in &events {
            let event = ManagerEvent::decode(&e.event_type, e.schema_version, &e.payload).map_err(
                |err| {
                    StoreError::Corrupt(format!(
                        "{} v{} in {stream}: {err}",
                        e.event_type, e.stream_version
                    ))
                },
            )?;
            state.apply(&event);
        }
        let state = Arc::new(state);
        self.managers.put(stream, state.clone(), head);
        Ok((state, head))
    }

    async fn decide_customer(
        &self,
        envelope: &Envelope,
        command: &CustomerCommand,
        fingerprint: &str,
        fresh: bool,
    ) -> Result<Decided, CommandError> {
        let id = command.customer_id();
        let stream = customer_stream(id);
        if fresh {
            self.customers.remove(&stream);
            if let Some(m) = target_manager(command) {
                self.managers.remove(&manager_stream(m));
            }
        }
        let (state, head, source) = self.load_or_assume_new(command, fresh).await?;
        let now = head.decision_time(envelope.issued_at);
        let mut known = self
            .gather(&state, command, now, &envelope.actor, fresh)
            .await?;
        let events = customer::decide(&state, command, &known.ctx)?;
        let turn = known.policy_choice(&events);
        let mut next = CustomerState::clone(&state);
        for e in &events {
            next.apply(e);
        }
        let (claims, releases) = key_changes(&state, &next);
        // The append refuses a key another customer holds (and stores nothing, not even
        // a new customer's key); decided again on what is stored, the domain names the
        // rule.
        if fresh {
            self.check_unique_keys(&state, command, &known.ctx, &stream, &claims)
                .await?;
        }

        let (new_events, new_key) = self.sealed(id, &stream, &events, head, fresh).await?;
        let mut request = AppendRequest::new(self.meta(envelope, now, command.name(), fingerprint));
        request.new_keys.extend(new_key);
        request.writes.push(StreamWrite {
            stream_id: stream.clone(),
            expected: expected(head.version),
            events: new_events.clone(),
        });
        for (stream_id, version) in std::mem::take(&mut known.guards) {
            // Read guard: e.g. the manager must not change (deactivated, limit lowered)
            // meanwhile, nor the policy a decision by policy followed.
            request.writes.push(StreamWrite {
                stream_id,
                expected: expected(version),
                events: Vec::new(),
            });
        }
        let claim = |k: &UniqueKey| UniqueClaim {
            key: self.stored_key(k),
            owner: stream.clone(),
        };
        request.claims = claims.iter().map(claim).collect();
        request.releases = releases.iter().map(claim).collect();
        request.counters = counters::changes(&state, &events, known.receiver, &known.ctx);
        if let Some(key) = turn {
            request.counters.push(CounterChange {
                key,
                delta: 1,
                max: None,
            });
        }

        let decided = Head::new(head.version + events.len() as u64, Some(now));
        let assumed = self.remember_decided(source, stream, next, decided);
        Ok(Decided {
            events: new_events,
            request,
            assumed,
        })
    }

    /// A customer's new events as stored: personal fields sealed, with the customer's
    /// first key when it had none.
    async fn sealed(
        &self,
        id: CustomerId,
        stream: &str,
        events: &[CustomerEvent],
        head: Head,
        fresh: bool,
    ) -> Result<(Vec<NewEvent>, Option<NewSubjectKey>), CommandError> {
        let mut new_events = to_new_events(events, |e| {
            (e.event_type(), CustomerEvent::SCHEMA_VERSION, e.payload())
        });
        // A stream with no events has no key yet (one that has after all refuses the
        // append, and the command is decided again, fresh).
        let sealed = if head.version == 0 && !fresh {
            self.vault.seal_new(stream, &mut new_events).await
        } else {
            self.vault.seal(stream, &mut new_events).await
        };
        let new_key = sealed.map_err(|err| privacy_error(id, err))?;
        Ok((new_events, new_key))
    }

    /// What a customer decision needs besides the customer's state: the policy, the
    /// receiving manager and their counts, a team's candidates, an escalation chain; and
    /// the read guards the append must check.
    async fn gather(
        &self,
        state: &CustomerState,
        command: &CustomerCommand,
        now: DateTime<Utc>,
        actor: &Actor,
        fresh: bool,
    ) -> Result<Known, CommandError> {
        let (policy, policy_head) = self.policy(fresh).await?;
        let mut known = Known {
            ctx: DecisionContext::new(now, actor.clone()).with_policy(policy.clone()),
            guards: Vec::new(),
            receiver: None,
            team: None,
        };
        match command {
            CustomerCommand::AssignByPolicy(_) => {
                known
                    .guards
                    .push((POLICY_STREAM.to_string(), policy_head.version));
                let rule = state
                    .registered()
                    .and_then(|c| matching_rule(&policy.document, &CustomerFacts::of(c)));
                if let Some((_, rule)) = rule {
                    let t = self.team(&policy, &rule.team, now, fresh).await?;
                    known.ctx = known.ctx.with_candidates(t.candidates.clone());
                    known.team = Some((rule.team.clone(), t));
                }
            }
            CustomerCommand::ApplyTimer(t) => {
                known
                    .guards
                    .push((POLICY_STREAM.to_string(), policy_head.version));
                if let Timer::SlaBreach { complaint_id, .. } = &t.timer {
                    // The chain of the customer's owner, or of whoever owned it when the
                    // complaint arrived if it has gone to the pool since.
                    let logged = state
                        .registered()
                        .and_then(|c| c.complaints.get(complaint_id))
                        .and_then(|k| k.logged_owner);
                    let owner = state.owner().or(logged);
                    known.ctx = known
                        .ctx
                        .with_escalation(self.escalation_chain(owner).await?);
                }
            }
            CustomerCommand::EscalateComplaint(_) => {
                known.ctx = known
                    .ctx
                    .with_escalation(self.escalation_chain(state.owner()).await?);
            }
            _ => {}
        }
        if let Some(m) = target_manager(command) {
            self.gather_receiver(&mut known, &policy, m, command)
                .await?;
        }
        Ok(known)
    }

    /// The manager a command gives the customer (or a referral) to: their view with the
    /// policy's holding limit and counted holdings, claims today for a claim; guarded.
    async fn gather_receiver(
        &self,
        known: &mut Known,
        policy: &Policy,
        m: ManagerId,
        command: &CustomerCommand,
    ) -> Result<(), CommandError> {
        let (manager, manager_head) = self.load_manager(m).await?;
        let counted = self.store.counter(&counted_key(policy, m)).await?;
        if let Some(mut view) = manager.view(counted.max(0) as u32) {
            view.holding_limit = policy
                .document
                .holding_limit(&view.team, view.holding_limit);
            known.receiver = Some(Receiver {
                manager: m,
                limit: view.holding_limit,
            });
            known.ctx = known.ctx.clone().with_manager(view);
            known.guards.push((manager_stream(m), manager_head.version));
        }
        if let CustomerCommand::ClaimFromPool(_) = command {
            let day = policy.document.local_day(known.ctx.now);
            let claims = self.store.counter(&claims_key(m, day)).await?;
            known.ctx = known.ctx.clone().with_claims_today(claims.max(0) as u32);
        }
        Ok(())
    }

    /// Refuse a command whose new unique keys another customer holds: decided again with
    /// the duplicate known, so the domain names the rule.
    async fn check_unique_keys(
        &self,
        state: &CustomerState,
        command: &CustomerCommand,
        ctx: &DecisionContext,
        stream: &str,
        claims: &[UniqueKey],
    ) -> Result<(), CommandError> {
        for key in claims {
            let Some(owner) = self.store.key_owner(&self.stored_key(key)).await? else {
                continue;
            };
            if owner == stream {
                continue;
            }
            let existing = owner
                .strip_prefix("customer-")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("unique key {key} held by {owner:?}"))
                })?;
            let ctx = ctx.clone().with_duplicate(DuplicateMatch {
                existing,
                key: key.clone(),
            });
            customer::decide(state, command, &ctx)?;
            return Err(StoreError::Corrupt(format!(
                "{} accepted a duplicate {key}",
                command.name()
            ))
            .into());
        }
        Ok(())
    }

    async fn decide_manager(
        &self,
        envelope: &Envelope,
        command: &ManagerCommand,
        fingerprint: &str,
        fresh: bool,
    ) -> Result<Decided, CommandError> {
        let id = command.manager_id();
        let stream = manager_stream(id);
        if fresh {
            self.managers.remove(&stream);
        }
        let (state, head) = self.load_manager(id).await?;
        let version = head.version;
        let now = head.decision_time(envelope.issued_at);
        let ctx = DecisionContext::new(now, envelope.actor.clone());
        let events = manager::decide(&state, command, &ctx)?;
        if matches!(command, ManagerCommand::Register(_)) {
            // A new manager: list the directory again before the next assignment by policy.
            self.lookups.forget_directory();
        }
        let mut next = ManagerState::clone(&state);
        for e in &events {
            next.apply(e);
        }
        let new_events = to_new_events(&events, |e| {
            (e.event_type(), ManagerEvent::SCHEMA_VERSION, e.payload())
        });
        let request = AppendRequest::new(self.meta(envelope, now, command.name(), fingerprint))
            .write(stream.clone(), expected(version), new_events.clone());
        self.managers.put(
            stream,
            Arc::new(next),
            Head::new(version + events.len() as u64, Some(now)),
        );
        Ok(Decided {
            events: new_events,
            request,
            assumed: None,
        })
    }

    async fn decide_policy(
        &self,
        envelope: &Envelope,
        command: &PolicyCommand,
        fingerprint: &str,
    ) -> Result<Decided, CommandError> {
        // Always the committed version: a publish is judged against the latest one.
        let (current, head) = self.policy(true).await?;
        let version = head.version;
        let state = policy::PolicyState {
            current: (*current).clone(),
        };
        let now = head.decision_time(envelope.issued_at);
        let ctx = DecisionContext::new(now, envelope.actor.clone());
        let events = policy::aggregate::decide(&state, command, &ctx)?;
        let new_events = to_new_events(&events, |e| {
            (
                e.event_type(),
                policy::PolicyEvent::SCHEMA_VERSION,
                e.payload(),
            )
        });
        let request = AppendRequest::new(self.meta(envelope, now, command.name(), fingerprint))
            .write(
                POLICY_STREAM.to_string(),
                expected(version),
                new_events.clone(),
            );
        self.lookups.forget_policy();
        Ok(Decided {
            events: new_events,
            request,
            assumed: None,
        })
    }

    /// The append's metadata; `at` is when the decision was made (the envelope's time,
    /// never before the stream's last event).
    fn meta(
        &self,
        envelope: &Envelope,
        at: DateTime<Utc>,
        name: &str,
        fingerprint: &str,
    ) -> CommandMeta {
        CommandMeta {
            command_id: envelope.command_id,
            command_type: name.to_string(),
            correlation_id: envelope.correlation_id,
            causation_id: envelope.causation_id,
            actor: envelope.actor.to_string(),
            issued_at: at,
            fingerprint: fingerprint.to_string(),
        }
    }
}

/// Where a stream read whole stands.
/// The unique keys to claim (held by `after`, not by `before`) and to release.
fn key_changes(before: &CustomerState, after: &CustomerState) -> (Vec<UniqueKey>, Vec<UniqueKey>) {
    let before: BTreeSet<UniqueKey> = before.unique_keys().into_iter().collect();
    let after: BTreeSet<UniqueKey> = after.unique_keys().into_iter().collect();
    (
        after.difference(&before).cloned().collect(),
        before.difference(&after).cloned().collect(),
    )
}

fn stream_head<P>(events: &[crm_eventstore::RecordedEvent<P>]) -> Head {
    events.last().map_or(Head::default(), |e| {
        Head::new(e.stream_version, Some(e.metadata.occurred_at))
    })
}

fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

fn to_new_events<E>(
    events: &[E],
    describe: impl Fn(&E) -> (&'static str, u32, serde_json::Value),
) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| {
            let (event_type, schema_version, payload) = describe(e);
            NewEvent {
                event_id: Uuid::now_v7(),
                event_type: event_type.to_string(),
                schema_version,
                payload,
            }
        })
        .collect()
}

/// The manager a customer command gives something to (ownership or a referral).
pub fn target_manager(command: &CustomerCommand) -> Option<ManagerId> {
    match command {
        CustomerCommand::AssignOwner(c) => Some(c.manager_id),
        CustomerCommand::TransferOwner(c) => Some(c.to_manager_id),
        CustomerCommand::ClaimFromPool(c) => Some(c.manager_id),
        CustomerCommand::RecordReferral(c) => Some(c.referred_to),
        _ => None,
    }
}

/// Content hash of a command: a reused command id with other content is refused.
/// What a command id is bound to: a keyed hash (HMAC-SHA-256 under the index secret) of
/// the command's content, so a reused id with other content is refused. Keyed, because
/// the content holds personal data and the hash is kept for good in `commands`.
pub fn fingerprint(secret: &[u8], command: &Command) -> String {
    let mut content = command.name().as_bytes().to_vec();
    content.extend(serde_json::to_vec(command).expect("commands serialise"));
    crm_privacy::blind_index(secret, &String::from_utf8_lossy(&content))
}

fn accepted(outcome: AppendOutcome) -> Accepted {
    Accepted {
        command_id: outcome.command_id,
        duplicate: outcome.duplicate,
        events: outcome
            .events
            .into_iter()
            .map(|a| AcceptedEvent {
                event_id: a.event_id,
                event_type: a.event_type,
                stream_id: a.stream_id,
                stream_version: a.stream_version,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_domain::customer::RegisterCustomer;
    use crm_domain::{CustomerType, FirstTouchChannel};
    use crm_eventstore::testing::sqlite_store;

    fn register(id: CustomerId, phone: &str) -> CustomerCommand {
        CustomerCommand::Register(RegisterCustomer {
            customer_id: id,
            customer_type: CustomerType::Individual,
            display_name: "Wang Fang".into(),
            phone: Some(phone.into()),
            email: None,
            registration_number: None,
            region: "east".parse().unwrap(),
            branch: None,
            first_touch_channel: FirstTouchChannel::Branch,
            industry: None,
            product_interest: None,
            consents: None,
            stage: None,
            value_tier: None,
            aum_minor: None,
        })
    }

    /// A registration decided on an assumed (new) customer leaves nothing in the cache
    /// while its append is pending: were the customer to exist, commands deciding on the
    /// cache meanwhile would see this registration's data at a version the store has,
    /// and their appends would pass. Once its append committed, the state is cached (the
    /// next command need not read the stream). A decision on read state still caches.
    #[tokio::test]
    async fn an_assumed_customer_is_cached_only_once_appended() {
        let (store, _path) = sqlite_store().await;
        let handler = CommandHandler::new(store.clone(), HandlerConfig::default());
        let c = CustomerId::new(uuid::Uuid::now_v7());
        let stream = customer_stream(c);
        let first = handler.handle(
            Envelope::new(Actor::person("t"), Utc::now()),
            Command::Customer(register(c, "13800000008")),
        );
        first.await.unwrap();
        let (state, head) = handler
            .customers
            .get(&stream)
            .expect("cached once appended");
        assert_eq!(
            (
                head.version,
                state.registered().map(|c| c.display_name.as_str())
            ),
            (1, Some("Wang Fang"))
        );
        // Another process's view: it never saw the customer.
        let other = CommandHandler::new(store.clone(), HandlerConfig::default());
        let envelope = Envelope::new(Actor::person("t"), Utc::now());
        let again = register(c, "13900000008");
        other
            .decide_customer(&envelope, &again, "f", false)
            .await
            .expect("decided on the assumption, not yet appended");
        assert!(
            other.customers.get(&stream).is_none(),
            "the assumed state was cached"
        );
        // Decided on what is stored (fresh), the state is read and cached as read.
        let refused = other.decide_customer(&envelope, &again, "f", true).await;
        assert!(matches!(refused, Err(CommandError::Refused(_))));
        assert_eq!(
            other.customers.get(&stream).map(|(_, h)| h.version),
            Some(1)
        );
    }
}
