//! Database connections: those of the read path, and the session locks the anchorers hold.
//!
//! sqlx's pool sends a round trip (`Sync`, answered by `ReadyForQuery`) on every connection it
//! takes back, whatever the connection did. A read by id runs two short queries, so through the
//! pool it costs four round trips, and on a small machine those extra wake-ups of PostgreSQL
//! and the gateway cost as much as the queries. [`ReadConnections`] keeps its own connections:
//! one is checked out for a whole request. Given back with [`ReadConnection::release`] (every
//! query on it completed) it is reused as it is; dropped without that (an error, a cancelled
//! request, a query perhaps still in flight) it is pinged before its next use, which drains
//! whatever the server still had to say and discards it if broken. A connection idle for
//! longer than [`PING_AFTER_IDLE`] is pinged too, so a restarted server costs no failed
//! request.

use sqlx::{Connection, PgConnection, postgres::PgConnectOptions};
use std::{
    ops::{Deref, DerefMut},
    sync::Mutex,
    time::{Duration, Instant},
};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Idle time after which a connection is pinged before use.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A bounded set of connections handed out for one request at a time.
#[derive(Debug)]
pub struct ReadConnections {
    connect: PgConnectOptions,
    /// Idle connections, with when they were released cleanly (`None`: check before use).
    idle: Mutex<Vec<(PgConnection, Option<Instant>)>>,
    permits: Semaphore,
    acquire_timeout: Duration,
}

/// A connection checked out of [`ReadConnections`].
#[derive(Debug)]
pub struct ReadConnection<'a> {
    conn: Option<PgConnection>,
    owner: &'a ReadConnections,
    _permit: SemaphorePermit<'a>,
}

impl ReadConnections {
    /// At most `max` connections to `connect`, opened when first needed.
    pub fn new(connect: PgConnectOptions, max: usize, acquire_timeout: Duration) -> Self {
        Self {
            connect,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max.max(1)),
            acquire_timeout,
        }
    }

    /// A connection for one request: the most recently used idle one, else a new one. Waits
    /// for a free slot up to the acquire timeout (then `PoolTimedOut`, as the pool would).
    pub async fn acquire(&self) -> Result<ReadConnection<'_>, sqlx::Error> {
        let permit = tokio::time::timeout(self.acquire_timeout, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        loop {
            let idle = self.lock_idle().pop();
            let conn = match idle {
                Some((mut conn, released)) => {
                    let check = released.is_none_or(|at| at.elapsed() > PING_AFTER_IDLE);
                    if check && conn.ping().await.is_err() {
                        // Broken (server restarted, connection lost): drop it, try the next.
                        continue;
                    }
                    conn
                }
                None => PgConnection::connect_with(&self.connect).await?,
            };
            return Ok(ReadConnection {
                conn: Some(conn),
                owner: self,
                _permit: permit,
            });
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<(PgConnection, Option<Instant>)>> {
        // A panic while holding the lock cannot leave the list inconsistent (push/pop only).
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ReadConnection<'_> {
    /// Returns the connection for reuse as it is: call only after every query on it has
    /// completed.
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.owner.lock_idle().push((conn, Some(Instant::now())));
        }
    }
}

impl Drop for ReadConnection<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Not released: it is checked (and drained) before anyone uses it again.
            self.owner.lock_idle().push((conn, None));
        }
    }
}

impl Deref for ReadConnection<'_> {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        // Present until release (which consumes the guard) or drop.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl DerefMut for ReadConnection<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().unwrap_or_else(|| unreachable!())
    }
}

/// A connection of `pool` holding the session advisory lock `key` (held while the connection
/// stays open; closing it releases the lock), or `None` when another session holds it or the
/// database fails: the connection then goes back to the pool, holding nothing.
pub async fn try_advisory_lock(pool: &sqlx::PgPool, key: i64) -> Option<PgConnection> {
    let mut conn = pool.acquire().await.ok()?;
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .ok()?;
    got.then(|| conn.detach())
}
