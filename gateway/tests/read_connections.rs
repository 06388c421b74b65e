//! The read path's connections (gateway/src/db.rs) against a real PostgreSQL server:
//! reused as they are when released, drained before reuse when dropped mid-query, replaced
//! when the server ended them while idle.
#![allow(missing_docs, clippy::unwrap_used)]

use carechain_gateway::db::{PING_AFTER_IDLE, ReadConnections};
use sqlx::postgres::PgConnectOptions;
use std::{str::FromStr, time::Duration};

fn server() -> PgConnectOptions {
    let url =
        std::env::var("DATABASE_URL").expect("DATABASE_URL (a PostgreSQL server URL) is required");
    PgConnectOptions::from_str(&url).unwrap()
}

async fn backend_pid(conn: &mut sqlx::PgConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn released_reused_cancelled_drained_killed_replaced() {
    let reads = ReadConnections::new(server(), 1, Duration::from_secs(5));

    // Released after its queries: the same server session serves the next request.
    let mut conn = reads.acquire().await.unwrap();
    let first = backend_pid(&mut conn).await;
    conn.release();
    let mut conn = reads.acquire().await.unwrap();
    assert_eq!(backend_pid(&mut conn).await, first);

    // A request cancelled while its query runs: the connection's next user gets its own
    // answer, not the abandoned query's.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        sqlx::query_scalar::<_, i32>("SELECT 7 FROM pg_sleep(0.5)").fetch_one(&mut *conn),
    )
    .await;
    assert!(abandoned.is_err(), "the query was cut short");
    drop(conn);
    let mut conn = reads.acquire().await.unwrap();
    let answer: i32 = sqlx::query_scalar("SELECT 42")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(answer, 42);
    let pid = backend_pid(&mut conn).await;
    conn.release();

    // Only one connection may be out at a time: a second request waits, then times out.
    let tight = ReadConnections::new(server(), 1, Duration::from_millis(200));
    let held = tight.acquire().await.unwrap();
    let err = tight.acquire().await.unwrap_err();
    assert!(matches!(err, sqlx::Error::PoolTimedOut), "{err}");
    held.release();
    tight.acquire().await.unwrap().release();

    // The server ends the idle session (as a restart would): after the idle check interval
    // the next request gets a fresh session instead of an error.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect_with(&server())
        .await
        .unwrap();
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(ended);
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
    let mut conn = reads.acquire().await.unwrap();
    let replaced = backend_pid(&mut conn).await;
    assert_ne!(replaced, pid);
    conn.release();
}
