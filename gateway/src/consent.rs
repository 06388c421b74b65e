//! Consent decisions, asked of the chain before the store is touched.
//!
//! Each decision is `ConsentRegistry.decide` evaluated by `eth_call` at a pinned block, whose
//! number travels back to the client in `X-Consent-Block`. The block is the highest of the
//! probed chain head, the indexer's cursor and the highest block any notification named, so a
//! change the indexer has announced is always inside the state the decision reads.
//!
//! Decisions are cached. The indexer `NOTIFY`s on `carechain_consent` (payload names the
//! patient) and `carechain_membership` (names the organisation) in the transaction that
//! indexes a change; a consent notification drops that patient's entries, any other drops
//! everything. While the notification stream is down nothing is cached.
//!
//! A cached decision made at indexer cursor `c` answers a request that finds the cursor at
//! `c`, or at any block up to the last progress mark read (`carechain_indexed`: every change
//! notification up to that block has been read, so whatever could have changed the decision
//! has dropped it). A request that finds the cursor beyond the mark (the indexer has committed
//! blocks whose notifications are not read yet) decides again. So a decision outlives the
//! blocks that do not touch it (at a block every 2 s, most blocks), yet a revocation takes
//! effect on the first request after the indexer commits it. Decisions also end at the wall
//! clock: at `decide`'s `until` and after `--decision-cache-ttl-ms`.
//!
//! The service fails closed: when the chain cannot be reached, answers for another chain, or
//! the indexer (which drives the invalidation) lags the chain by more than the configured
//! number of blocks, every request that needs a decision is refused with 503.

use crate::{chain::ChainClient, config::GatewayConfig, error::AppError};
use alloy::primitives::Address;
use carechain_contracts::{Action, Basis, Purpose, ResourceType};
use carechain_formats::index::{self, Channel, Notification, Subject};
use sqlx::{PgPool, postgres::PgListener};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// The indexer's channels a decision depends on.
pub const CHANNELS: [Channel; 3] = [Channel::Consent, Channel::Membership, Channel::Indexed];

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    /// The patient whose data is touched.
    pub patient: Address,
    /// The signed-in requester.
    pub requester: Address,
    /// The resource type.
    pub resource_type: ResourceType,
    /// The SMART action.
    pub action: Action,
    /// The purpose of use.
    pub purpose: Purpose,
}

/// A consent decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether access is allowed.
    pub allowed: bool,
    /// Why, as `decide` answered.
    pub basis: Basis,
    /// The block the decision was evaluated at (0 when checks are disabled).
    pub block: u64,
}

/// Tuning of the decision service.
#[derive(Debug, Clone)]
pub struct ConsentSettings {
    /// How long a cached decision is used at most (zero disables the cache).
    pub cache_ttl: Duration,
    /// Maximum entries in the cache.
    pub cache_capacity: usize,
    /// Refuse when the indexer is more than this many blocks behind the chain head.
    pub max_index_lag_blocks: u64,
    /// Refuse when the last successful health probe is older than this.
    pub max_health_age: Duration,
    /// How often the chain head and the indexer cursor are probed.
    pub probe_interval: Duration,
    /// Benchmarks only: allow everything without asking the chain.
    pub disabled_for_benchmark: bool,
}

impl ConsentSettings {
    /// The settings a configuration asks for.
    pub fn from_config(config: &GatewayConfig) -> Self {
        Self {
            cache_ttl: Duration::from_millis(config.decision_cache_ttl_ms),
            cache_capacity: 100_000,
            max_index_lag_blocks: config.max_index_lag_blocks,
            max_health_age: Duration::from_millis(config.max_health_age_ms),
            probe_interval: Duration::from_millis(config.probe_interval_ms),
            disabled_for_benchmark: config.bench_skip_consent,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Health {
    head: u64,
    indexed: u64,
    at: Instant,
}

/// The indexer cursors, `from` to `to` inclusive, at which a cached decision is what deciding
/// again would answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorSpan {
    /// The cursor the decision was made at.
    pub from: u64,
    /// The last progress mark read (at least `from`).
    pub to: u64,
}

impl CursorSpan {
    /// Whether `cursor` is inside the span.
    pub fn contains(&self, cursor: u64) -> bool {
        (self.from..=self.to).contains(&cursor)
    }
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    decision: Decision,
    /// The indexer cursor when the decision was made.
    cursor: u64,
    expires: Instant,
}

impl Cached {
    /// The cursors this decision holds at, given the last progress mark read: from the cursor
    /// it was made at up to the mark (every change notification up to the mark has been
    /// applied, and none dropped this entry). A cursor below the one it was made at is a
    /// rollback: decide again.
    fn span(&self, marked: u64) -> CursorSpan {
        CursorSpan {
            from: self.cursor,
            to: self.cursor.max(marked),
        }
    }
}

/// Decides and caches.
#[derive(Debug)]
pub struct ConsentService {
    chain: Arc<ChainClient>,
    pool: PgPool,
    settings: ConsentSettings,
    cache: Mutex<HashMap<DecisionKey, Cached>>,
    /// Bumped by every invalidation; a decision computed across a bump is not cached.
    generation: AtomicU64,
    /// How many decisions were asked of the chain (`eth_call`s of `decide`).
    decisions_asked: AtomicU64,
    /// Whether the notification stream is up (the cache is used only then).
    listening: AtomicBool,
    /// Highest block named by a notification.
    notified_block: AtomicU64,
    /// The last progress mark read: every change notification up to this block has been
    /// applied (0 until the first mark after (re)connecting).
    marked_through: AtomicU64,
    health: RwLock<Option<Health>>,
}

/// `decide`'s `until` when time alone changes nothing (`type(uint40).max`).
const FOREVER: u64 = (1 << 40) - 1;

const CHAIN_DOWN: &str =
    "consent decisions are unavailable: the chain is unreachable (fail closed)";

impl ConsentService {
    /// A service over `chain`, reading the indexer's cursor from `pool`.
    pub fn new(chain: Arc<ChainClient>, pool: PgPool, settings: ConsentSettings) -> Self {
        Self {
            chain,
            pool,
            settings,
            cache: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(false),
            notified_block: AtomicU64::new(0),
            marked_through: AtomicU64::new(0),
            decisions_asked: AtomicU64::new(0),
            health: RwLock::new(None),
        }
    }

    /// Whether checks are switched off (benchmark baseline).
    pub fn disabled(&self) -> bool {
        self.settings.disabled_for_benchmark
    }

    fn check_health(&self) -> Result<Health, AppError> {
        let health = *self.health.read().unwrap_or_else(|e| e.into_inner());
        let health = health.ok_or(AppError::Unavailable(
            "consent decisions are unavailable: the chain and the consent index have not been reached yet (fail closed)",
        ))?;
        if health.at.elapsed() > self.settings.max_health_age {
            return Err(AppError::Unavailable(
                "consent decisions are unavailable: the chain or the consent index is unreachable (fail closed)",
            ));
        }
        if health.head.saturating_sub(health.indexed) > self.settings.max_index_lag_blocks {
            return Err(AppError::Unavailable(
                "consent decisions are unavailable: the consent index is stale (fail closed)",
            ));
        }
        Ok(health)
    }

    /// Refuses (503, fail closed) while the chain or the index is unreachable or the index is
    /// stale: what the directory and decisions are read from.
    pub fn ensure_fresh(&self) -> Result<(), AppError> {
        if self.settings.disabled_for_benchmark {
            return Ok(());
        }
        self.check_health().map(|_| ())
    }

    /// The decision for `key`.
    pub async fn decide(&self, key: DecisionKey) -> Result<Decision, AppError> {
        if self.settings.disabled_for_benchmark {
            return Ok(Self::benchmark_decision());
        }
        let cursor = indexed_block(&self.pool, self.chain.chain_id())
            .await
            .map_err(|err| {
                tracing::warn!(%err, "indexer cursor unavailable");
                AppError::Unavailable(
                    "consent decisions are unavailable: the consent index is unreachable (fail closed)",
                )
            })?;
        self.decide_at_cursor(key, cursor).await
    }

    fn benchmark_decision() -> Decision {
        Decision {
            allowed: true,
            basis: Basis::OwnData,
            block: 0,
        }
    }

    /// A cached decision that allows `key`, with the indexer cursors it holds at (`None` in
    /// benchmark mode: any cursor). For a caller that reads the cursor in the same statement
    /// as the data and uses the data only when the cursor is inside that span: the decision is
    /// then exactly what [`Self::decide_at_cursor`] would answer for that request. `None` when
    /// nothing usable is cached (then the caller takes the full path).
    pub fn cached_allow(&self, key: &DecisionKey) -> Option<(Decision, Option<CursorSpan>)> {
        if self.settings.disabled_for_benchmark {
            return Some((Self::benchmark_decision(), None));
        }
        let health = self.check_health().ok()?;
        if !self.cache_usable() {
            return None;
        }
        // The mark is read before the entry: an entry still there after the mark was read has
        // survived every notification up to the mark.
        let marked = self.marked_through.load(Ordering::Acquire);
        let hit = self.cached(key)?;
        let span = hit.span(marked);
        (hit.decision.allowed
            && health.head.saturating_sub(span.to) <= self.settings.max_index_lag_blocks)
            .then_some((hit.decision, Some(span)))
    }

    /// Whether decisions are cached now: the cache is on and the notification stream that
    /// invalidates it is up.
    fn cache_usable(&self) -> bool {
        !self.settings.cache_ttl.is_zero() && self.listening.load(Ordering::Acquire)
    }

    /// The cached entry for `key`, if no notification dropped it and it has not expired.
    fn cached(&self, key: &DecisionKey) -> Option<Cached> {
        let hit = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()?;
        (Instant::now() < hit.expires).then_some(hit)
    }

    /// The decision for `key`, given the indexer's cursor as read (by the caller, in the same
    /// query as other index metadata) after the request arrived: see [`Self::decide`].
    pub async fn decide_at_cursor(
        &self,
        key: DecisionKey,
        cursor: Option<u64>,
    ) -> Result<Decision, AppError> {
        if self.settings.disabled_for_benchmark {
            return Ok(Self::benchmark_decision());
        }
        let health = self.check_health()?;
        // The indexer's cursor as of the request: a cached decision is used only while the
        // cursor is inside the span it holds for (the cursor it was made at, up to the last
        // progress mark read), so a change the indexer has committed takes effect on the very
        // next request even before its notification has been read.
        let cursor = cursor.ok_or(AppError::Unavailable(
            "consent decisions are unavailable: the consent index is stale (fail closed)",
        ))?;
        if health.head.saturating_sub(cursor) > self.settings.max_index_lag_blocks {
            return Err(AppError::Unavailable(
                "consent decisions are unavailable: the consent index is stale (fail closed)",
            ));
        }
        let generation = self.generation.load(Ordering::Acquire);
        let use_cache = self.cache_usable();
        let marked = self.marked_through.load(Ordering::Acquire);
        if use_cache
            && let Some(hit) = self.cached(&key)
            && hit.span(marked).contains(cursor)
        {
            return Ok(hit.decision);
        }
        self.decisions_asked.fetch_add(1, Ordering::Relaxed);
        let block = health
            .head
            .max(cursor)
            .max(self.notified_block.load(Ordering::Acquire));
        let (mut allowed, mut basis, until) = self.ask_chain(&key, block).await?;
        // A grant ends at its validUntil by the wall clock too: the pinned block may be older
        // than the end (no block since), and a cached answer must not outlive it.
        let mut cache_for = self.settings.cache_ttl;
        // `decide` answers until when its answer holds by time alone: for an allowance the
        // earliest end of what allows it, for a refusal the earliest start of a consent not in
        // force yet. A cached answer never outlives that moment.
        if until != FOREVER {
            let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
            if until > now {
                cache_for = cache_for.min(Duration::from_secs(until - now));
            } else if allowed {
                allowed = false;
                basis = Basis::ConsentExpired;
            } else {
                // A consent has started by the wall clock but not yet at the pinned block: the
                // next block may allow, so this refusal is not kept.
                cache_for = Duration::ZERO;
            }
        }
        let decision = Decision {
            allowed,
            basis,
            block,
        };
        if use_cache && !cache_for.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            // Only cache what no invalidation raced with.
            if self.generation.load(Ordering::Acquire) == generation {
                if cache.len() >= self.settings.cache_capacity {
                    cache.clear();
                }
                cache.insert(
                    key,
                    Cached {
                        decision,
                        cursor,
                        expires: Instant::now() + cache_for,
                    },
                );
            }
        }
        Ok(decision)
    }

    /// The block a decision made now is evaluated at (the chain's head as last probed, or a
    /// newer block the indexer announced), failing closed exactly as [`Self::decide`] does.
    pub fn current_block(&self) -> Result<u64, AppError> {
        let health = self.check_health()?;
        Ok(health
            .head
            .max(health.indexed)
            .max(self.notified_block.load(Ordering::Acquire)))
    }

    /// The decision for `key` evaluated at `block` (from [`Self::current_block`]), not cached:
    /// for work that decides many keys at one block, as a research export decides its whole
    /// cohort at its start block. The same rules as [`Self::decide`]: the basis must agree
    /// with the verdict, and a consent past its end by the wall clock no longer allows.
    pub async fn decide_at_block(
        &self,
        key: DecisionKey,
        block: u64,
    ) -> Result<Decision, AppError> {
        if self.settings.disabled_for_benchmark {
            return Ok(Self::benchmark_decision());
        }
        self.decisions_asked.fetch_add(1, Ordering::Relaxed);
        let (mut allowed, mut basis, until) = self.ask_chain(&key, block).await?;
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        if allowed && until != FOREVER && until <= now {
            allowed = false;
            basis = Basis::ConsentExpired;
        }
        Ok(Decision {
            allowed,
            basis,
            block,
        })
    }

    /// `ConsentRegistry.decide` for `key` at `block`: (allowed, basis, until). The contract is
    /// the one source of the rules (which consent slot each basis reads, break-glass for
    /// ETREAT only); an answer allows only when its basis agrees with its verdict.
    async fn ask_chain(
        &self,
        key: &DecisionKey,
        block: u64,
    ) -> Result<(bool, Basis, u64), AppError> {
        let (allowed, basis, until) = self
            .chain
            .decide(
                key.patient,
                key.requester,
                key.resource_type,
                key.action,
                key.purpose,
                block,
            )
            .await
            .map_err(|err| {
                tracing::warn!(%err, "consent decision failed");
                AppError::Unavailable(CHAIN_DOWN)
            })?;
        Ok((allowed && basis.is_allowed(), basis, until))
    }

    /// How many decisions this service has asked of the chain so far (each an `eth_call` of
    /// `decide`); the rest were answered from the cache.
    pub fn decisions_asked(&self) -> u64 {
        self.decisions_asked.load(Ordering::Relaxed)
    }

    /// A number that changes whenever the indexer announces a consent or membership change
    /// (anything cached from the index under it is then stale); `None` while the notification
    /// stream is down (nothing may be cached then).
    pub fn change_generation(&self) -> Option<u64> {
        (self.marked_through() > 0).then(|| self.generation.load(Ordering::Acquire))
    }

    /// The last progress mark read from the indexer (0 before the first, and after the
    /// notification stream was re-established until the next).
    pub fn marked_through(&self) -> u64 {
        self.marked_through.load(Ordering::Acquire)
    }

    /// Drops the cached decisions `subject` may have changed: a patient's consent changes
    /// only that patient's decisions; anything else may change any decision.
    fn invalidate(&self, subject: Subject) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        match subject {
            Subject::Patient(patient) => cache.retain(|key, _| key.patient != patient),
            Subject::Org(_) | Subject::Gateway(_) | Subject::All => cache.clear(),
        }
    }

    /// Applies one notification (also used by tests that stand in for the indexer). A
    /// notification on a channel decisions do not depend on changes nothing.
    pub fn notified(&self, channel: &str, payload: &str) {
        let Some(channel) = Channel::from_name(channel).filter(|c| CHANNELS.contains(c)) else {
            return;
        };
        let notification = Notification::parse(channel, payload);
        if channel == Channel::Indexed {
            // Marks arrive in commit order: the latest is the truth (it moves back with a
            // rollback). A mark without a block tells nothing.
            if let Some(block) = notification.block {
                self.marked_through.store(block, Ordering::Release);
            }
            return;
        }
        if let Some(block) = notification.block {
            self.notified_block.fetch_max(block, Ordering::AcqRel);
        }
        self.invalidate(notification.subject);
    }

    /// Runs the invalidation listener and the health probe until `shutdown`.
    pub fn spawn_background(self: &Arc<Self>, shutdown: CancellationToken) {
        if self.settings.disabled_for_benchmark {
            return;
        }
        let this = Arc::clone(self);
        let stop = shutdown.clone();
        tokio::spawn(async move { this.listen(stop).await });
        let this = Arc::clone(self);
        tokio::spawn(async move { this.probe(shutdown).await });
    }

    async fn listen(&self, shutdown: CancellationToken) {
        loop {
            self.listening.store(false, Ordering::Release);
            // Notifications may be lost while disconnected: no mark stands until a new one.
            self.marked_through.store(0, Ordering::Release);
            self.invalidate(Subject::All);
            let connected = async {
                let mut listener = PgListener::connect_with(&self.pool).await?;
                listener
                    .listen_all(CHANNELS.iter().map(|c| c.name()))
                    .await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let mut listener = tokio::select! {
                () = shutdown.cancelled() => return,
                connected = connected => match connected {
                    Ok(listener) => listener,
                    Err(err) => {
                        tracing::warn!(%err, "cannot LISTEN for consent changes; decisions are not cached");
                        tokio::select! {
                            () = shutdown.cancelled() => return,
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        }
                    }
                },
            };
            self.listening.store(true, Ordering::Release);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    msg = listener.try_recv() => match msg {
                        Ok(Some(n)) => self.notified(n.channel(), n.payload()),
                        // The connection dropped: notifications may have been lost. Start over
                        // (cache off until LISTEN is back).
                        Ok(None) => break,
                        Err(err) => {
                            tracing::warn!(%err, "consent notifications broke; reconnecting");
                            break;
                        }
                    }
                }
            }
        }
    }

    async fn probe(&self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.settings.probe_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_problem: Option<String> = Some(String::new());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            let head = self.chain.head_checked().await;
            let indexed = indexed_block(&self.pool, self.chain.chain_id()).await;
            // Log transitions, not every failed probe (four a second).
            let problem = match (head, indexed) {
                (Ok(head), Ok(Some(indexed))) => {
                    *self.health.write().unwrap_or_else(|e| e.into_inner()) = Some(Health {
                        head,
                        indexed,
                        at: Instant::now(),
                    });
                    None
                }
                (Err(err), _) => Some(format!("chain probe failed: {err}")),
                (_, Ok(None)) => Some("the indexer has not indexed this chain yet".to_owned()),
                (_, Err(err)) => Some(format!("indexer cursor probe failed: {err}")),
            };
            if problem != last_problem {
                match &problem {
                    Some(problem) => {
                        tracing::warn!(%problem, "consent decisions unavailable (fail closed)")
                    }
                    None => tracing::info!("chain and consent index reachable"),
                }
                last_problem = problem;
            }
        }
    }
}

/// The last block the indexer has committed for `chain_id`, if it indexes that chain.
pub async fn indexed_block(pool: &PgPool, chain_id: u64) -> Result<Option<u64>, sqlx::Error> {
    let chain_id = i64::try_from(chain_id).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let block: Option<i64> = sqlx::query_scalar(index::CURSOR_SQL)
        .bind(chain_id)
        .fetch_optional(pool)
        .await?;
    Ok(block.map(|b| u64::try_from(b).unwrap_or(0)))
}
