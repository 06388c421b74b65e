//! The event log: decoding contract logs into per-table column batches, and inserting them.
//!
//! Each contract event has its own table (see `migrations/`); a [`EventBatch`] holds the
//! decoded rows of one block range column by column, so a table's rows go to PostgreSQL in a
//! single `INSERT ... SELECT FROM UNNEST(...)` statement.

use alloy::{
    primitives::{Address, B256, U256},
    rpc::types::Log,
    sol_types::SolEvent,
};
use carechain_contracts::{
    AuditAnchor, ConsentRegistry, ContractAddresses, ProviderRegistry, RecordRegistry,
};
use sqlx::PgConnection;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::OnceLock,
};

/// A log that cannot be turned into an event row.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The node returned a log without block number, block hash, transaction hash or index
    /// (a pending log): the range is fetched again.
    #[error("the node returned an incomplete log (missing {0}); it will be fetched again")]
    Incomplete(&'static str),
    /// A number does not fit its column.
    #[error("{what} {value} does not fit in the database column")]
    OutOfRange {
        /// What number.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// A log of a known contract and event signature did not decode: the ABI in `abi/` does
    /// not match the deployed contract.
    #[error(
        "log {log_index} of block {block_number} ({event}) does not decode with the committed ABI: {source}; \
         the deployment does not match abi/*.json"
    )]
    Abi {
        /// The event name.
        event: &'static str,
        /// The block.
        block_number: u64,
        /// The log index.
        log_index: u64,
        /// The decoder's error.
        #[source]
        source: alloy::sol_types::Error,
    },
}

/// Position and origin of a log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogMeta {
    pub(crate) block_number: i64,
    pub(crate) log_index: i32,
    pub(crate) tx_hash: B256,
}

macro_rules! or_empty {
    () => {
        ""
    };
    ($cast:literal) => {
        $cast
    };
}

macro_rules! event_tables {
    (
        $(
            $(#[$doc:meta])*
            $rows:ident . $field:ident => $table:literal {
                $( $col:ident : $rty:ty = $sqlty:literal $(=> $cast:literal)? ),* $(,)?
            }
        )*
    ) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Default, Clone)]
            pub(crate) struct $rows {
                block_number: Vec<i64>,
                log_index: Vec<i32>,
                tx_hash: Vec<Vec<u8>>,
                $( $col: Vec<$rty>, )*
            }

            impl $rows {
                /// The table this batch goes to.
                pub(crate) const TABLE: &'static str = $table;

                #[allow(clippy::too_many_arguments)]
                fn push(&mut self, meta: &LogMeta, $( $col: $rty ),*) {
                    self.block_number.push(meta.block_number);
                    self.log_index.push(meta.log_index);
                    self.tx_hash.push(meta.tx_hash.to_vec());
                    $( self.$col.push($col); )*
                }

                fn len(&self) -> usize {
                    self.block_number.len()
                }

                fn sql() -> &'static str {
                    static SQL: OnceLock<String> = OnceLock::new();
                    SQL.get_or_init(|| {
                        insert_sql($table, &[ $( (stringify!($col), $sqlty, or_empty!($($cast)?)) ),* ])
                    })
                }

                fn copy_sql() -> &'static str {
                    static SQL: OnceLock<String> = OnceLock::new();
                    SQL.get_or_init(|| copy_sql($table, &[ $( stringify!($col) ),* ]))
                }

                /// The rows in COPY text format.
                fn copy_text(&self, chain_id: i64, out: &mut Vec<u8>) {
                    for i in 0..self.len() {
                        chain_id.write_copy(out);
                        out.push(b'\t');
                        self.block_number[i].write_copy(out);
                        out.push(b'\t');
                        self.log_index[i].write_copy(out);
                        out.push(b'\t');
                        self.tx_hash[i].write_copy(out);
                        $(
                            out.push(b'\t');
                            self.$col[i].write_copy(out);
                        )*
                        out.push(b'\n');
                    }
                }

                async fn insert(&self, conn: &mut PgConnection, chain_id: i64) -> Result<(), sqlx::Error> {
                    if self.block_number.is_empty() {
                        return Ok(());
                    }
                    if self.len() >= COPY_MIN_ROWS {
                        let mut text = Vec::with_capacity(self.len() * 256);
                        self.copy_text(chain_id, &mut text);
                        let mut copy = conn.copy_in_raw(Self::copy_sql()).await?;
                        copy.send(text).await?;
                        copy.finish().await?;
                        return Ok(());
                    }
                    self.insert_unnest(conn, chain_id).await
                }

                async fn insert_unnest(&self, conn: &mut PgConnection, chain_id: i64) -> Result<(), sqlx::Error> {
                    if self.block_number.is_empty() {
                        return Ok(());
                    }
                    sqlx::query(Self::sql())
                        .bind(chain_id)
                        .bind(&self.block_number)
                        .bind(&self.log_index)
                        .bind(&self.tx_hash)
                        $( .bind(&self.$col) )*
                        .execute(conn)
                        .await?;
                    Ok(())
                }
            }
        )*

        /// The decoded rows of a block range, one column batch per event table.
        #[derive(Debug, Default, Clone)]
        pub struct EventRows {
            $( pub(crate) $field: $rows, )*
        }

        impl EventRows {
            /// Number of rows over every table.
            pub fn len(&self) -> usize {
                0 $( + self.$field.len() )*
            }

            /// Whether no table has a row.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Inserts every table's rows (one statement per non-empty table): `COPY` for
            /// [`COPY_MIN_ROWS`] rows or more, else one multi-row `INSERT`.
            pub async fn insert(&self, conn: &mut PgConnection, chain_id: i64) -> Result<(), sqlx::Error> {
                $( self.$field.insert(conn, chain_id).await?; )*
                Ok(())
            }

            /// Inserts every table's rows with multi-row `INSERT ... SELECT FROM UNNEST` only
            /// (the benchmark compares it with `COPY`).
            pub async fn insert_unnest(&self, conn: &mut PgConnection, chain_id: i64) -> Result<(), sqlx::Error> {
                $( self.$field.insert_unnest(conn, chain_id).await?; )*
                Ok(())
            }

            /// Rows per table name, for logs and tests.
            pub fn counts(&self) -> Vec<(&'static str, usize)> {
                vec![ $( ($rows::TABLE, self.$field.len()) ),* ]
            }
        }

        /// Every event table, in migration order.
        pub const EVENT_TABLES: &[&str] = &[ $( $table ),* ];
    };
}

/// From this many rows of one table on, a batch is written with `COPY ... FROM STDIN` (one
/// more round trip than an `INSERT`, but far less work per row for the server and the client);
/// below it, with one multi-row `INSERT` (a followed block usually holds a few events).
pub const COPY_MIN_ROWS: usize = 32;

/// A column value in PostgreSQL's COPY text format.
trait CopyText {
    fn write_copy(&self, out: &mut Vec<u8>);
}

macro_rules! copy_text_integer {
    ($($t:ty),*) => {
        $(
            impl CopyText for $t {
                fn write_copy(&self, out: &mut Vec<u8>) {
                    use std::io::Write;
                    // Writing to a Vec cannot fail.
                    let _ = write!(out, "{self}");
                }
            }
        )*
    };
}

copy_text_integer!(i16, i32, i64);

impl CopyText for Vec<u8> {
    /// `bytea` in hex, its backslash escaped for COPY (`\\x0a1b...` for `\x0a1b...`).
    fn write_copy(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.extend_from_slice(b"\\\\x");
        for byte in self {
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0x0f)]);
        }
    }
}

impl CopyText for String {
    /// Text (and decimal digits of numeric columns) with COPY's special characters escaped.
    fn write_copy(&self, out: &mut Vec<u8>) {
        for byte in self.bytes() {
            match byte {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                other => out.push(other),
            }
        }
    }
}

/// `COPY t (chain_id, block_number, log_index, tx_hash, ...) FROM STDIN` for one event table.
fn copy_sql(table: &str, columns: &[&str]) -> String {
    let mut names = String::from("chain_id, block_number, log_index, tx_hash");
    for name in columns {
        names.push_str(", ");
        names.push_str(name);
    }
    format!("COPY {table} ({names}) FROM STDIN")
}

/// `INSERT INTO t (...) SELECT $1, u.* FROM UNNEST($2, $3, ...)` for one event table.
/// The third tuple item is an optional cast (`::numeric`) applied after UNNEST of a text array.
fn insert_sql(table: &str, columns: &[(&str, &str, &str)]) -> String {
    let mut names = String::from("chain_id, block_number, log_index, tx_hash");
    let mut select = String::from("$1, u.block_number, u.log_index, u.tx_hash");
    let mut arrays = String::from("$2::int8[], $3::int4[], $4::bytea[]");
    let mut aliases = String::from("block_number, log_index, tx_hash");
    for (i, (name, sql_type, cast)) in columns.iter().enumerate() {
        names.push_str(&format!(", {name}"));
        select.push_str(&format!(", u.{name}{cast}"));
        arrays.push_str(&format!(", ${}::{sql_type}[]", i + 5));
        aliases.push_str(&format!(", {name}"));
    }
    format!("INSERT INTO {table} ({names}) SELECT {select} FROM UNNEST({arrays}) AS u({aliases})")
}

event_tables! {
    /// `ProviderRegistry.OrganisationAdmitted`.
    OrganisationAdmittedRows.organisation_admitted => "ev_organisation_admitted" {
        org: Vec<u8> = "bytea", kind: i16 = "int2", name: String = "text",
    }
    /// `ProviderRegistry.OrganisationStatusChanged`.
    OrganisationStatusChangedRows.organisation_status_changed => "ev_organisation_status_changed" {
        org: Vec<u8> = "bytea", status: i16 = "int2",
    }
    /// `ProviderRegistry.MemberAdded`.
    MemberAddedRows.member_added => "ev_member_added" {
        org: Vec<u8> = "bytea", member_key: Vec<u8> = "bytea", role: i16 = "int2",
    }
    /// `ProviderRegistry.MemberStatusChanged`.
    MemberStatusChangedRows.member_status_changed => "ev_member_status_changed" {
        org: Vec<u8> = "bytea", member_key: Vec<u8> = "bytea", status: i16 = "int2",
    }
    /// `ProviderRegistry.MemberKeyRotated`.
    MemberKeyRotatedRows.member_key_rotated => "ev_member_key_rotated" {
        org: Vec<u8> = "bytea", old_key: Vec<u8> = "bytea", new_key: Vec<u8> = "bytea",
    }
    /// `ProviderRegistry.MembershipMirrorSet`.
    MembershipMirrorSetRows.membership_mirror_set => "ev_membership_mirror_set" {
        mirror: Vec<u8> = "bytea",
    }
    /// `ProviderRegistry.EndpointSet`: the directory of FHIR endpoints.
    EndpointSetRows.endpoint_set => "ev_endpoint_set" {
        org: Vec<u8> = "bytea", url: String = "text",
    }
    /// AccessControl `RoleGranted` of any of the contracts.
    RoleGrantedRows.role_granted => "ev_role_granted" {
        contract: Vec<u8> = "bytea", role: Vec<u8> = "bytea", account: Vec<u8> = "bytea", sender: Vec<u8> = "bytea",
    }
    /// AccessControl `RoleRevoked` of any of the contracts.
    RoleRevokedRows.role_revoked => "ev_role_revoked" {
        contract: Vec<u8> = "bytea", role: Vec<u8> = "bytea", account: Vec<u8> = "bytea", sender: Vec<u8> = "bytea",
    }
    /// AccessControl `RoleAdminChanged` of any of the contracts.
    RoleAdminChangedRows.role_admin_changed => "ev_role_admin_changed" {
        contract: Vec<u8> = "bytea", role: Vec<u8> = "bytea", previous_admin_role: Vec<u8> = "bytea",
        new_admin_role: Vec<u8> = "bytea",
    }
    /// `ConsentRegistry.ConsentGranted`.
    ConsentGrantedRows.consent_granted => "ev_consent_granted" {
        patient: Vec<u8> = "bytea", grantee: Vec<u8> = "bytea", actor: Vec<u8> = "bytea",
        resource_types: i64 = "int8", actions: i16 = "int2", purposes: i32 = "int4",
        valid_from: i64 = "int8", valid_until: i64 = "int8", consent_hash: Vec<u8> = "bytea",
    }
    /// `ConsentRegistry.ConsentRevoked`.
    ConsentRevokedRows.consent_revoked => "ev_consent_revoked" {
        patient: Vec<u8> = "bytea", grantee: Vec<u8> = "bytea", actor: Vec<u8> = "bytea",
    }
    /// `ConsentRegistry.NoncesInvalidated`.
    NoncesInvalidatedRows.nonces_invalidated => "ev_nonces_invalidated" {
        patient: Vec<u8> = "bytea", actor: Vec<u8> = "bytea", new_nonce: String = "text" => "::numeric",
    }
    /// `ConsentRegistry.DelegateSet`.
    DelegateSetRows.delegate_set => "ev_delegate_set" {
        patient: Vec<u8> = "bytea", delegate: Vec<u8> = "bytea", kind: i16 = "int2", valid_until: i64 = "int8",
    }
    /// `ConsentRegistry.ProxyScopeSet`.
    ProxyScopeSetRows.proxy_scope_set => "ev_proxy_scope_set" {
        patient: Vec<u8> = "bytea", delegate: Vec<u8> = "bytea", resource_types: i64 = "int8",
        actions: i16 = "int2", purposes: i32 = "int4",
    }
    /// `ConsentRegistry.DelegateRemoved`.
    DelegateRemovedRows.delegate_removed => "ev_delegate_removed" {
        patient: Vec<u8> = "bytea", delegate: Vec<u8> = "bytea",
    }
    /// `ConsentRegistry.BreakGlassOpened`.
    BreakGlassOpenedRows.break_glass_opened => "ev_break_glass_opened" {
        session_id: String = "text" => "::numeric", patient: Vec<u8> = "bytea", org: Vec<u8> = "bytea",
        opener: Vec<u8> = "bytea", reason: i16 = "int2", expires_at: i64 = "int8",
    }
    /// `ConsentRegistry.BreakGlassClosed`.
    BreakGlassClosedRows.break_glass_closed => "ev_break_glass_closed" {
        session_id: String = "text" => "::numeric", patient: Vec<u8> = "bytea", org: Vec<u8> = "bytea",
        closer: Vec<u8> = "bytea",
    }
    /// `ConsentRegistry.BreakGlassMaxDurationSet`.
    BreakGlassMaxDurationSetRows.break_glass_max_duration_set => "ev_break_glass_max_duration_set" {
        max_duration: i64 = "int8",
    }
    /// `RecordRegistry.RecordAnchored`.
    RecordAnchoredRows.record_anchored => "ev_record_anchored" {
        org: Vec<u8> = "bytea", version_hash: Vec<u8> = "bytea", anchorer: Vec<u8> = "bytea",
    }
    /// `RecordRegistry.RecordBatchAnchored`.
    RecordBatchAnchoredRows.record_batch_anchored => "ev_record_batch_anchored" {
        org: Vec<u8> = "bytea", root: Vec<u8> = "bytea", leaf_count: i64 = "int8", anchorer: Vec<u8> = "bytea",
    }
    /// `AuditAnchor.GatewayRegistered`.
    GatewayRegisteredRows.gateway_registered => "ev_gateway_registered" {
        gateway: Vec<u8> = "bytea",
    }
    /// `AuditAnchor.GatewayRemoved`.
    GatewayRemovedRows.gateway_removed => "ev_gateway_removed" {
        gateway: Vec<u8> = "bytea",
    }
    /// `AuditAnchor.AuditBatchAnchored`.
    AuditBatchAnchoredRows.audit_batch_anchored => "ev_audit_batch_anchored" {
        batch_id: String = "text" => "::numeric", gateway: Vec<u8> = "bytea",
        from_seq: String = "text" => "::numeric", to_seq: String = "text" => "::numeric",
        root: Vec<u8> = "bytea",
    }
}

/// Who a batch's events concern, for change notifications.
#[derive(Debug, Default, Clone)]
pub struct Subjects {
    /// Patients whose consent, delegates or break-glass sessions changed.
    pub patients: BTreeSet<Address>,
    /// Organisations whose status or member keys changed.
    pub organisations: BTreeSet<Address>,
    /// Organisations with new record anchors.
    pub anchor_orgs: BTreeSet<Address>,
    /// Gateways with new audit batches.
    pub audit_gateways: BTreeSet<Address>,
}

/// The decoded events of a block range.
#[derive(Debug, Default, Clone)]
pub struct EventBatch {
    /// The rows, per table.
    pub rows: EventRows,
    /// Hashes of the blocks the logs came from.
    pub block_hashes: BTreeMap<u64, B256>,
    /// Who the events concern.
    pub subjects: Subjects,
    /// Whether any membership event is in the batch (membership state is derived per event).
    pub has_membership: bool,
}

/// The topic-0 of every event the indexer stores, for `eth_getLogs` filters.
pub fn event_signatures() -> Vec<B256> {
    vec![
        ProviderRegistry::OrganisationAdmitted::SIGNATURE_HASH,
        ProviderRegistry::OrganisationStatusChanged::SIGNATURE_HASH,
        ProviderRegistry::MemberAdded::SIGNATURE_HASH,
        ProviderRegistry::MemberStatusChanged::SIGNATURE_HASH,
        ProviderRegistry::MemberKeyRotated::SIGNATURE_HASH,
        ProviderRegistry::MembershipMirrorSet::SIGNATURE_HASH,
        ProviderRegistry::EndpointSet::SIGNATURE_HASH,
        ProviderRegistry::RoleGranted::SIGNATURE_HASH,
        ProviderRegistry::RoleRevoked::SIGNATURE_HASH,
        ProviderRegistry::RoleAdminChanged::SIGNATURE_HASH,
        ConsentRegistry::ConsentGranted::SIGNATURE_HASH,
        ConsentRegistry::ConsentRevoked::SIGNATURE_HASH,
        ConsentRegistry::NoncesInvalidated::SIGNATURE_HASH,
        ConsentRegistry::DelegateSet::SIGNATURE_HASH,
        ConsentRegistry::ProxyScopeSet::SIGNATURE_HASH,
        ConsentRegistry::DelegateRemoved::SIGNATURE_HASH,
        ConsentRegistry::BreakGlassOpened::SIGNATURE_HASH,
        ConsentRegistry::BreakGlassClosed::SIGNATURE_HASH,
        ConsentRegistry::BreakGlassMaxDurationSet::SIGNATURE_HASH,
        RecordRegistry::RecordAnchored::SIGNATURE_HASH,
        RecordRegistry::RecordBatchAnchored::SIGNATURE_HASH,
        AuditAnchor::GatewayRegistered::SIGNATURE_HASH,
        AuditAnchor::GatewayRemoved::SIGNATURE_HASH,
        AuditAnchor::AuditBatchAnchored::SIGNATURE_HASH,
    ]
}

fn addr(a: Address) -> Vec<u8> {
    a.to_vec()
}

fn word(h: B256) -> Vec<u8> {
    h.to_vec()
}

/// Reinterprets a uint64 bitmap as the BIGINT holding the same 64 bits.
fn bits64(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn checked_i64(what: &'static str, v: u64) -> Result<i64, DecodeError> {
    i64::try_from(v).map_err(|_| DecodeError::OutOfRange { what, value: v })
}

fn text(s: &str) -> String {
    // PostgreSQL TEXT cannot hold NUL; the schema documents the replacement.
    s.replace('\0', "\u{FFFD}")
}

fn decimal(v: U256) -> String {
    v.to_string()
}

impl EventBatch {
    /// Number of decoded events.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Decodes `log` into its table. Logs of other contracts or events are ignored (`false`).
    pub fn push_log(
        &mut self,
        log: &Log,
        contracts: &ContractAddresses,
    ) -> Result<bool, DecodeError> {
        let Some(topic0) = log.topic0().copied() else {
            return Ok(false);
        };
        let address = log.address();
        let block_number = log
            .block_number
            .ok_or(DecodeError::Incomplete("blockNumber"))?;
        let block_hash = log.block_hash.ok_or(DecodeError::Incomplete("blockHash"))?;
        let log_index = log.log_index.ok_or(DecodeError::Incomplete("logIndex"))?;
        let tx_hash = log
            .transaction_hash
            .ok_or(DecodeError::Incomplete("transactionHash"))?;
        let meta = LogMeta {
            block_number: checked_i64("block number", block_number)?,
            log_index: i32::try_from(log_index).map_err(|_| DecodeError::OutOfRange {
                what: "log index",
                value: log_index,
            })?,
            tx_hash,
        };
        let data = &log.inner.data;

        macro_rules! decode {
            ($event:ty) => {
                <$event>::decode_log_data_validate(data).map_err(|source| DecodeError::Abi {
                    event: <$event>::SIGNATURE,
                    block_number,
                    log_index,
                    source,
                })?
            };
        }

        let rows = &mut self.rows;
        let subjects = &mut self.subjects;
        // AccessControl events have the same signature in every contract.
        let access_control = address == contracts.provider_registry
            || address == contracts.consent_registry
            || address == contracts.audit_anchor;
        if access_control && topic0 == ProviderRegistry::RoleGranted::SIGNATURE_HASH {
            let e = decode!(ProviderRegistry::RoleGranted);
            rows.role_granted.push(
                &meta,
                addr(address),
                word(e.role),
                addr(e.account),
                addr(e.sender),
            );
        } else if access_control && topic0 == ProviderRegistry::RoleRevoked::SIGNATURE_HASH {
            let e = decode!(ProviderRegistry::RoleRevoked);
            rows.role_revoked.push(
                &meta,
                addr(address),
                word(e.role),
                addr(e.account),
                addr(e.sender),
            );
        } else if access_control && topic0 == ProviderRegistry::RoleAdminChanged::SIGNATURE_HASH {
            let e = decode!(ProviderRegistry::RoleAdminChanged);
            rows.role_admin_changed.push(
                &meta,
                addr(address),
                word(e.role),
                word(e.previousAdminRole),
                word(e.newAdminRole),
            );
        } else if address == contracts.provider_registry {
            use ProviderRegistry as P;
            if topic0 == P::OrganisationAdmitted::SIGNATURE_HASH {
                let e = decode!(P::OrganisationAdmitted);
                rows.organisation_admitted.push(
                    &meta,
                    addr(e.org),
                    i16::from(e.kind),
                    text(&e.name),
                );
                subjects.organisations.insert(e.org);
            } else if topic0 == P::OrganisationStatusChanged::SIGNATURE_HASH {
                let e = decode!(P::OrganisationStatusChanged);
                rows.organisation_status_changed
                    .push(&meta, addr(e.org), i16::from(e.status));
                subjects.organisations.insert(e.org);
            } else if topic0 == P::MemberAdded::SIGNATURE_HASH {
                let e = decode!(P::MemberAdded);
                rows.member_added
                    .push(&meta, addr(e.org), addr(e.key), i16::from(e.role));
                subjects.organisations.insert(e.org);
            } else if topic0 == P::MemberStatusChanged::SIGNATURE_HASH {
                let e = decode!(P::MemberStatusChanged);
                rows.member_status_changed.push(
                    &meta,
                    addr(e.org),
                    addr(e.key),
                    i16::from(e.status),
                );
                subjects.organisations.insert(e.org);
            } else if topic0 == P::MemberKeyRotated::SIGNATURE_HASH {
                let e = decode!(P::MemberKeyRotated);
                rows.member_key_rotated
                    .push(&meta, addr(e.org), addr(e.oldKey), addr(e.newKey));
                subjects.organisations.insert(e.org);
            } else if topic0 == P::MembershipMirrorSet::SIGNATURE_HASH {
                let e = decode!(P::MembershipMirrorSet);
                rows.membership_mirror_set.push(&meta, addr(e.mirror));
            } else if topic0 == P::EndpointSet::SIGNATURE_HASH {
                let e = decode!(P::EndpointSet);
                rows.endpoint_set.push(&meta, addr(e.org), text(&e.url));
                subjects.organisations.insert(e.org);
            } else {
                return Ok(false);
            }
            self.has_membership = true;
        } else if address == contracts.consent_registry {
            use ConsentRegistry as C;
            if topic0 == C::ConsentGranted::SIGNATURE_HASH {
                let e = decode!(C::ConsentGranted);
                rows.consent_granted.push(
                    &meta,
                    addr(e.patient),
                    addr(e.grantee),
                    addr(e.actor),
                    bits64(e.resourceTypes),
                    i16::from(e.actions),
                    i32::from(e.purposes),
                    checked_i64("validFrom", e.validFrom.to())?,
                    checked_i64("validUntil", e.validUntil.to())?,
                    word(e.consentHash),
                );
                subjects.patients.insert(e.patient);
            } else if topic0 == C::ConsentRevoked::SIGNATURE_HASH {
                let e = decode!(C::ConsentRevoked);
                rows.consent_revoked
                    .push(&meta, addr(e.patient), addr(e.grantee), addr(e.actor));
                subjects.patients.insert(e.patient);
            } else if topic0 == C::NoncesInvalidated::SIGNATURE_HASH {
                let e = decode!(C::NoncesInvalidated);
                rows.nonces_invalidated.push(
                    &meta,
                    addr(e.patient),
                    addr(e.actor),
                    decimal(e.newNonce),
                );
            } else if topic0 == C::DelegateSet::SIGNATURE_HASH {
                let e = decode!(C::DelegateSet);
                rows.delegate_set.push(
                    &meta,
                    addr(e.patient),
                    addr(e.delegate),
                    i16::from(e.kind),
                    checked_i64("validUntil", e.validUntil.to())?,
                );
                subjects.patients.insert(e.patient);
            } else if topic0 == C::ProxyScopeSet::SIGNATURE_HASH {
                let e = decode!(C::ProxyScopeSet);
                rows.proxy_scope_set.push(
                    &meta,
                    addr(e.patient),
                    addr(e.delegate),
                    bits64(e.resourceTypes),
                    i16::from(e.actions),
                    i32::from(e.purposes),
                );
                subjects.patients.insert(e.patient);
            } else if topic0 == C::DelegateRemoved::SIGNATURE_HASH {
                let e = decode!(C::DelegateRemoved);
                rows.delegate_removed
                    .push(&meta, addr(e.patient), addr(e.delegate));
                subjects.patients.insert(e.patient);
            } else if topic0 == C::BreakGlassOpened::SIGNATURE_HASH {
                let e = decode!(C::BreakGlassOpened);
                rows.break_glass_opened.push(
                    &meta,
                    e.id.to_string(),
                    addr(e.patient),
                    addr(e.org),
                    addr(e.opener),
                    i16::from(e.reason),
                    checked_i64("expiresAt", e.expiresAt.to())?,
                );
                subjects.patients.insert(e.patient);
            } else if topic0 == C::BreakGlassClosed::SIGNATURE_HASH {
                let e = decode!(C::BreakGlassClosed);
                rows.break_glass_closed.push(
                    &meta,
                    e.id.to_string(),
                    addr(e.patient),
                    addr(e.org),
                    addr(e.closer),
                );
                subjects.patients.insert(e.patient);
            } else if topic0 == C::BreakGlassMaxDurationSet::SIGNATURE_HASH {
                let e = decode!(C::BreakGlassMaxDurationSet);
                rows.break_glass_max_duration_set
                    .push(&meta, i64::from(e.maxDuration));
            } else {
                return Ok(false);
            }
        } else if address == contracts.record_registry {
            use RecordRegistry as R;
            if topic0 == R::RecordAnchored::SIGNATURE_HASH {
                let e = decode!(R::RecordAnchored);
                rows.record_anchored.push(
                    &meta,
                    addr(e.org),
                    word(e.versionHash),
                    addr(e.anchorer),
                );
                subjects.anchor_orgs.insert(e.org);
            } else if topic0 == R::RecordBatchAnchored::SIGNATURE_HASH {
                let e = decode!(R::RecordBatchAnchored);
                rows.record_batch_anchored.push(
                    &meta,
                    addr(e.org),
                    word(e.root),
                    i64::from(e.count),
                    addr(e.anchorer),
                );
                subjects.anchor_orgs.insert(e.org);
            } else {
                return Ok(false);
            }
        } else if address == contracts.audit_anchor {
            use AuditAnchor as A;
            if topic0 == A::GatewayRegistered::SIGNATURE_HASH {
                let e = decode!(A::GatewayRegistered);
                rows.gateway_registered.push(&meta, addr(e.gateway));
                subjects.audit_gateways.insert(e.gateway);
            } else if topic0 == A::GatewayRemoved::SIGNATURE_HASH {
                let e = decode!(A::GatewayRemoved);
                rows.gateway_removed.push(&meta, addr(e.gateway));
                subjects.audit_gateways.insert(e.gateway);
            } else if topic0 == A::AuditBatchAnchored::SIGNATURE_HASH {
                let e = decode!(A::AuditBatchAnchored);
                rows.audit_batch_anchored.push(
                    &meta,
                    e.batchId.to_string(),
                    addr(e.gateway),
                    e.fromSeq.to_string(),
                    e.toSeq.to_string(),
                    word(e.root),
                );
                subjects.audit_gateways.insert(e.gateway);
            } else {
                return Ok(false);
            }
        } else {
            return Ok(false);
        }
        self.block_hashes.insert(block_number, block_hash);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_shape() {
        let sql = insert_sql("t", &[("a", "bytea", ""), ("n", "text", "::numeric")]);
        assert_eq!(
            sql,
            "INSERT INTO t (chain_id, block_number, log_index, tx_hash, a, n) \
             SELECT $1, u.block_number, u.log_index, u.tx_hash, u.a, u.n::numeric \
             FROM UNNEST($2::int8[], $3::int4[], $4::bytea[], $5::bytea[], $6::text[]) \
             AS u(block_number, log_index, tx_hash, a, n)"
        );
    }

    #[test]
    fn copy_text_escapes_what_copy_interprets() {
        let mut rows = OrganisationAdmittedRows::default();
        let meta = LogMeta {
            block_number: 7,
            log_index: 2,
            tx_hash: B256::repeat_byte(0xab),
        };
        rows.push(&meta, vec![0x01, 0xfe], -3, "a\tb\\c\nd\re".to_owned());
        let mut out = Vec::new();
        rows.copy_text(31337, &mut out);
        let tx = "ab".repeat(32);
        assert_eq!(
            String::from_utf8(out).expect("UTF-8"),
            format!("31337\t7\t2\t\\\\x{tx}\t\\\\x01fe\t-3\ta\\tb\\\\c\\nd\\re\n")
        );
        assert_eq!(
            OrganisationAdmittedRows::copy_sql(),
            "COPY ev_organisation_admitted (chain_id, block_number, log_index, tx_hash, org, kind, name) FROM STDIN"
        );
    }

    #[test]
    fn every_table_has_a_signature() {
        assert_eq!(EVENT_TABLES.len(), event_signatures().len());
        let unique: BTreeSet<_> = event_signatures().into_iter().collect();
        assert_eq!(unique.len(), EVENT_TABLES.len());
    }

    #[test]
    fn bitmaps_keep_all_bits() {
        assert_eq!(bits64(0x3fff), 0x3fff);
        assert_eq!(bits64(u64::MAX), -1);
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
    }
}
