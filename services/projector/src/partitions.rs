//! Which instance consumes which partition.
//!
//! Every customer's events carry one of [`PARTITIONS`] partition numbers in their subject,
//! and each partition has one durable consumer. In server mode an instance holds a
//! partition by a PostgreSQL session advisory lock on a dedicated connection, so two
//! instances never consume the same partition at once; if an instance dies its connection
//! closes and the lock is free. Instances heartbeat in `rm_projector_instances`; each aims
//! at `ceil(PARTITIONS / live instances)` partitions, taking free ones and giving back
//! extra ones, so the load spreads when instances come and go. In the embedded mode
//! (SQLite) the only instance holds every partition.

use std::collections::BTreeMap;
use std::time::Duration;

use crm_bus::subjects::PARTITIONS;
use crm_projections::ReadStore;
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::consume::{run_partition, Ctx};

/// An instance whose heartbeat is older than this is gone.
const INSTANCE_TIMEOUT: Duration = Duration::from_secs(6);
const TICK: Duration = Duration::from_secs(1);
/// Longest a lease statement may take; a lock connection that does not answer within it
/// (a server that vanished without closing the socket) is treated as lost.
const LEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// `op` within [`LEASE_TIMEOUT`], its timeout an error.
async fn bounded<T>(
    what: &str,
    op: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(LEASE_TIMEOUT, op)
        .await
        .map_err(|_| anyhow::anyhow!("{what}: no answer within {LEASE_TIMEOUT:?}"))?
}

struct Held {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Run the partition tasks of this instance until `shutdown` resolves.
pub async fn balance(
    ctx: Ctx,
    instance: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let mut held: BTreeMap<u32, Held> = BTreeMap::new();
    let mut leases = match &ctx.store {
        ReadStore::Postgres(pool) => Some(Leases::open(pool, &ctx.group).await?),
        ReadStore::Sqlite(_) => None,
    };
    let postgres = leases.is_some();
    let offset = crm_bus::subjects::partition_of(&instance);
    loop {
        ctx.beat.beat();
        // Restart tasks that ended with an error (NATS trouble); the lease stays held.
        for (p, h) in held.iter_mut() {
            if h.task.is_finished() {
                let (stop, rx) = watch::channel(false);
                let old = std::mem::replace(
                    h,
                    Held {
                        stop,
                        task: tokio::spawn(run_partition(ctx.clone(), *p, rx)),
                    },
                );
                match old.task.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(partition = p, error = %e, "partition task failed; restarted")
                    }
                    Err(e) => {
                        tracing::error!(partition = p, error = %e, "partition task panicked; restarted")
                    }
                }
            }
        }

        // In server mode no partition is held without its lock: while the database is
        // away, hold nothing and try again.
        if postgres && leases.is_none() {
            if let ReadStore::Postgres(pool) = &ctx.store {
                leases = bounded("open", Leases::open(pool, &ctx.group)).await.ok();
            }
            if leases.is_none() {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(TICK) => {}
                }
                continue;
            }
        }
        let target = match &mut leases {
            None => PARTITIONS as usize,
            Some(l) => match bounded("heartbeat", l.heartbeat(&ctx.store, &instance)).await {
                Ok(live) => (PARTITIONS as usize).div_ceil(live.max(1)),
                Err(e) => {
                    lease_lost(&mut held, &mut leases, &e).await;
                    continue;
                }
            },
        };

        // Give back what is beyond the fair share (highest partitions first).
        while held.len() > target {
            let (&p, _) = held.iter().next_back().expect("non-empty");
            let h = held.remove(&p).expect("held");
            stop_task(h).await;
            if let Some(l) = &mut leases {
                if let Err(e) = bounded("release", l.release(p)).await {
                    lease_lost(&mut held, &mut leases, &e).await;
                    break;
                }
            }
            tracing::info!(partition = p, "partition given back");
        }
        // Take free partitions up to the fair share, starting at this instance's offset.
        for i in 0..PARTITIONS {
            if held.len() >= target {
                break;
            }
            let p = (offset + i) % PARTITIONS;
            if held.contains_key(&p) {
                continue;
            }
            let got = match &mut leases {
                None if postgres => break,
                None => true,
                Some(l) => match bounded("take", l.try_take(p)).await {
                    Ok(got) => got,
                    Err(e) => {
                        lease_lost(&mut held, &mut leases, &e).await;
                        break;
                    }
                },
            };
            if got {
                let (stop, rx) = watch::channel(false);
                held.insert(
                    p,
                    Held {
                        stop,
                        task: tokio::spawn(run_partition(ctx.clone(), p, rx)),
                    },
                );
            }
        }

        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(TICK) => {}
        }
    }
    for (_, h) in held {
        stop_task(h).await;
    }
    if let Some(l) = leases {
        l.leave(&ctx.store, &instance).await;
    }
    Ok(())
}

/// The lock connection failed, and the locks may be gone with it: stop every partition
/// before another instance starts the same ones; the leases are reopened next tick.
async fn lease_lost(
    held: &mut BTreeMap<u32, Held>,
    leases: &mut Option<Leases>,
    e: &anyhow::Error,
) {
    tracing::error!(error = %e, "lease connection lost; releasing every partition");
    for (_, h) in std::mem::take(held) {
        stop_task(h).await;
    }
    *leases = None;
}

async fn stop_task(mut h: Held) {
    let _ = h.stop.send(true);
    // A task stuck on a vanished server is not waited for forever.
    let joined = match tokio::time::timeout(LEASE_TIMEOUT * 2, &mut h.task).await {
        Ok(joined) => joined,
        Err(_) => {
            tracing::warn!("partition task did not stop in time; aborted");
            h.task.abort();
            return;
        }
    };
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "partition task ended with an error"),
        Err(e) => tracing::error!(error = %e, "partition task panicked"),
    }
}

/// Session advisory locks on one dedicated connection.
struct Leases {
    conn: PgConnection,
    group: String,
}

impl Leases {
    async fn open(pool: &PgPool, group: &str) -> anyhow::Result<Self> {
        let conn = pool.acquire().await?.detach();
        Ok(Self {
            conn,
            group: group.to_string(),
        })
    }

    fn key(&self, partition: u32) -> i64 {
        crm_eventstore::plan::lock_key(&format!("projector:{}:{partition}", self.group))
    }

    async fn try_take(&mut self, partition: u32) -> anyhow::Result<bool> {
        let key = self.key(partition);
        Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut self.conn)
            .await?)
    }

    async fn release(&mut self, partition: u32) -> anyhow::Result<()> {
        let key = self.key(partition);
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(key)
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// Record this instance as alive; returns how many instances of the group are.
    async fn heartbeat(&mut self, store: &ReadStore, instance: &str) -> anyhow::Result<usize> {
        // The lock connection must be alive for the locks to be held.
        self.conn.ping().await?;
        let ReadStore::Postgres(pool) = store else {
            return Ok(1);
        };
        let now = chrono::Utc::now().timestamp_micros();
        sqlx::query(
            "INSERT INTO rm_projector_instances (instance_id, group_name, heartbeat_us) VALUES ($1, $2, $3) \
             ON CONFLICT (instance_id) DO UPDATE SET heartbeat_us = excluded.heartbeat_us",
        )
        .bind(instance)
        .bind(&self.group)
        .bind(now)
        .execute(pool)
        .await?;
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM rm_projector_instances WHERE group_name = $1 AND heartbeat_us > $2",
        )
        .bind(&self.group)
        .bind(now - INSTANCE_TIMEOUT.as_micros() as i64)
        .fetch_one(pool)
        .await?;
        Ok(live as usize)
    }

    async fn leave(mut self, store: &ReadStore, instance: &str) {
        let _ = sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut self.conn)
            .await;
        if let ReadStore::Postgres(pool) = store {
            let _ = sqlx::query("DELETE FROM rm_projector_instances WHERE instance_id = $1")
                .bind(instance)
                .execute(pool)
                .await;
        }
        let _ = self.conn.close().await;
    }
}
