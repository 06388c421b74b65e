//! The search query: `GET [type]?patient=..` with `_count`, `_lastUpdated`, `_sort`, `code`, `category`
//! and `date`, paged by stateless cursors.
//!
//! Consent (action `s`) is decided per patient before the index is paged: a search naming its
//! patient needs that one decision; a search without `patient` is restricted to the patients
//! whose decision allows it ([`candidate_patients`] lists who has matches). `total` counts
//! only those patients' records, and each page (a cursor request) is decided again. Paging is keyset (sort value, id), so
//! pages never overlap. A cursor is sealed (AES-256-GCM under a key derived from the KEK): it
//! carries the query, which may hold codes, yet shows the client nothing, and it is bound to
//! the requester who made the search.

use super::store::SearchTermHasher;
use crate::{
    error::AppError,
    fhir::{date::DateFilter, resource},
    paging::CursorCodec,
};
use alloy::primitives::Address;
use carechain_contracts::ResourceType;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};

/// Every parameter a search may carry (which of them apply to a type, [`SearchQuery::parse`]
/// decides); anything else is refused.
pub const PARAMS: &[&str] = &[
    "patient",
    "subject",
    "_id",
    "_count",
    "_lastUpdated",
    "_sort",
    "code",
    "category",
    "date",
    "_include",
    "_revinclude",
    "_total",
    "_summary",
    "_elements",
    "_cursor",
    "_purpose",
    "_format",
];

/// Sentinel sort value for records without a clinical date (sorted first ascending).
const NO_DATE: &str = "'0001-01-01 00:00:00+00'::timestamptz";

/// The sort order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Sort {
    /// `_lastUpdated`.
    LastUpdated,
    /// `-_lastUpdated`.
    LastUpdatedDesc,
    /// `date`.
    Date,
    /// `-date`.
    DateDesc,
}

impl Sort {
    fn parse(value: &str) -> Result<Self, AppError> {
        match value {
            "_lastUpdated" => Ok(Self::LastUpdated),
            "-_lastUpdated" => Ok(Self::LastUpdatedDesc),
            "date" => Ok(Self::Date),
            "-date" => Ok(Self::DateDesc),
            _ => Err(AppError::NotSupported(
                "_sort supports _lastUpdated, -_lastUpdated, date and -date".into(),
            )),
        }
    }

    fn column(self) -> String {
        match self {
            Self::LastUpdated | Self::LastUpdatedDesc => "last_updated".into(),
            Self::Date | Self::DateDesc => format!("COALESCE(date_start, {NO_DATE})"),
        }
    }

    fn descending(self) -> bool {
        matches!(self, Self::LastUpdatedDesc | Self::DateDesc)
    }

    fn code(self) -> &'static str {
        match self {
            Self::LastUpdated => "_lastUpdated",
            Self::LastUpdatedDesc => "-_lastUpdated",
            Self::Date => "date",
            Self::DateDesc => "-date",
        }
    }
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// The type searched.
    pub resource_type: String,
    /// The patient (lower-case address).
    pub patient: String,
    /// Page size (already clamped).
    pub count: usize,
    /// `_lastUpdated` filters (all must match).
    pub last_updated: Vec<String>,
    /// `date` filters.
    pub date: Vec<String>,
    /// `code` values (one parameter: any of the comma-separated values).
    pub code: Vec<Vec<String>>,
    /// `category` values.
    pub category: Vec<Vec<String>>,
    /// Order.
    pub sort: Sort,
    /// `_include` targets: `Patient` (the compartment's patient) or `Encounter`.
    #[serde(default)]
    pub include: Vec<String>,
    /// `_revinclude`: `(type, reference parameter)`: records of `type` that reference the
    /// matches (`patient`/`subject` when searching Patient, `encounter` when searching
    /// Encounter).
    #[serde(default)]
    pub revinclude: Vec<(String, String)>,
    /// `_id` values (any of them).
    #[serde(default)]
    pub ids: Vec<String>,
    /// `_total=none`: no count (saves the counting query).
    #[serde(default)]
    pub no_total: bool,
    /// `_summary`: `true`, `text`, `data`, `count` or `false` (absent: full resources).
    #[serde(default)]
    pub summary: Option<String>,
    /// `_elements`: the top-level elements to return.
    #[serde(default)]
    pub elements: Vec<String>,
}

impl SearchQuery {
    /// Parses the parameters of `GET [type]?..` (every one must be known).
    pub fn parse(
        resource_type: ResourceType,
        params: &[(String, String)],
        default_count: usize,
        max_count: usize,
    ) -> Result<Self, AppError> {
        let mut query = Self {
            resource_type: resource_type.code().to_owned(),
            patient: String::new(),
            count: default_count,
            last_updated: Vec::new(),
            date: Vec::new(),
            code: Vec::new(),
            category: Vec::new(),
            sort: Sort::LastUpdated,
            include: Vec::new(),
            revinclude: Vec::new(),
            ids: Vec::new(),
            no_total: false,
            summary: None,
            elements: Vec::new(),
        };
        let clinical = resource::has_clinical_params(resource_type);
        for (name, value) in params {
            match name.as_str() {
                "patient" | "subject" => {
                    let patient = resource::patient_reference(value)
                        .or_else(|| resource::normalize_address(value))
                        .ok_or_else(|| {
                            AppError::Invalid(
                                "patient must be a wallet address or Patient/<address>".into(),
                            )
                        })?;
                    if !query.patient.is_empty() && query.patient != patient {
                        return Err(AppError::Invalid("a search names one patient".into()));
                    }
                    query.patient = patient;
                }
                "_id" if resource_type == ResourceType::Patient => {
                    query.patient = resource::normalize_address(value).ok_or_else(|| {
                        AppError::Invalid("a Patient id is a wallet address".into())
                    })?;
                }
                "_id" => {
                    for id in token_values(value)? {
                        resource::validate_id(&id)?;
                        query.ids.push(id);
                    }
                }
                "_total" => match value.as_str() {
                    "none" => query.no_total = true,
                    "accurate" | "estimate" => query.no_total = false,
                    _ => {
                        return Err(AppError::Invalid(
                            "_total is none, estimate or accurate".into(),
                        ));
                    }
                },
                "_summary" => {
                    match value.parse::<carechain_fhir::Summary>() {
                        Ok(_) | Err(carechain_fhir::SummaryError::Count) => {}
                        Err(err) => return Err(AppError::Invalid(err.to_string())),
                    }
                    query.summary = Some(value.clone());
                }
                "_elements" => {
                    // Checked against the R4 definition of the type before anything is read.
                    for name in carechain_fhir::parse_elements(resource_type.code(), value)
                        .map_err(|err| AppError::Invalid(err.to_string()))?
                    {
                        if !query.elements.contains(&name) {
                            query.elements.push(name);
                        }
                    }
                }
                "_revinclude" => {
                    let target = revinclude_target(resource_type, value)?;
                    if !query.revinclude.contains(&target) {
                        query.revinclude.push(target);
                    }
                }
                "_count" => {
                    let count: usize = value.parse().map_err(|_| {
                        AppError::Invalid("_count must be a non-negative integer".into())
                    })?;
                    query.count = count.min(max_count);
                }
                "_lastUpdated" => {
                    DateFilter::parse(value)?;
                    query.last_updated.push(value.clone());
                }
                "_sort" => query.sort = Sort::parse(value)?,
                "date" if clinical => {
                    DateFilter::parse(value)?;
                    query.date.push(value.clone());
                }
                "code" if clinical => query.code.push(token_values(value)?),
                "category" if clinical => query.category.push(token_values(value)?),
                "_include" => {
                    let target = include_target(resource_type, value)?.code().to_owned();
                    if !query.include.contains(&target) {
                        query.include.push(target);
                    }
                }
                "_purpose" | "_format" => {}
                other => {
                    return Err(AppError::NotSupported(format!(
                        "unknown or unsupported search parameter `{}`",
                        other.chars().take(40).collect::<String>()
                    )));
                }
            }
        }
        if query.summary.is_some() && !query.elements.is_empty() {
            return Err(AppError::Invalid(
                "_summary and _elements cannot be combined".into(),
            ));
        }
        if query.summary.as_deref() == Some("count") {
            query.count = 0;
        }
        Ok(query)
    }

    /// The patient as an address.
    pub fn patient_address(&self) -> Result<Address, AppError> {
        self.patient
            .parse()
            .map_err(|_| AppError::Invalid("patient must be a wallet address".into()))
    }

    /// The conditions of the search, restricted to `patients` (the decided ones) when given.
    fn filters(
        &self,
        sql: &mut QueryBuilder<Postgres>,
        hasher: &SearchTermHasher,
        patients: Option<&[String]>,
    ) -> Result<(), AppError> {
        sql.push(" FROM gateway_resources WHERE NOT deleted AND resource_type = ");
        sql.push_bind(self.resource_type.clone());
        if let Some(patients) = patients {
            sql.push(" AND patient = ANY(");
            sql.push_bind(patients.to_vec());
            sql.push("::text[])");
        }
        if !self.ids.is_empty() {
            sql.push(" AND id = ANY(");
            sql.push_bind(self.ids.clone());
            sql.push("::text[])");
        }
        for value in &self.last_updated {
            let filter = DateFilter::parse(value)?;
            push_date(
                sql,
                &filter,
                "last_updated",
                "(last_updated + interval '1 microsecond')",
            );
        }
        for value in &self.date {
            let filter = DateFilter::parse(value)?;
            sql.push(" AND date_start IS NOT NULL");
            push_date(sql, &filter, "date_start", "date_end");
        }
        for (column, groups) in [("codes", &self.code), ("categories", &self.category)] {
            for values in groups {
                let hashes: Vec<Vec<u8>> = values.iter().map(|v| hasher.query_form(v)).collect();
                sql.push(format!(" AND {column} && "));
                sql.push_bind(hashes);
                sql.push("::bytea[]");
            }
        }
        Ok(())
    }
}

/// Appends a date condition: the prefix's comparison over `[start_col, end_col)`.
fn push_date(
    sql: &mut QueryBuilder<Postgres>,
    filter: &DateFilter,
    start_col: &str,
    end_col: &str,
) {
    use crate::fhir::date::Prefix;
    let (start, end) = (filter.range.start, filter.range.end);
    sql.push(" AND ");
    match filter.prefix {
        Prefix::Eq | Prefix::Ne => {
            if filter.prefix == Prefix::Ne {
                sql.push("NOT ");
            }
            sql.push(format!("({start_col} < "));
            sql.push_bind(end);
            sql.push(format!(" AND {end_col} > "));
            sql.push_bind(start);
            sql.push(")");
        }
        Prefix::Gt => {
            sql.push(format!("{end_col} > "));
            sql.push_bind(end);
        }
        Prefix::Lt => {
            sql.push(format!("{start_col} < "));
            sql.push_bind(start);
        }
        Prefix::Ge => {
            sql.push(format!("{end_col} > "));
            sql.push_bind(start);
        }
        Prefix::Le => {
            sql.push(format!("{start_col} < "));
            sql.push_bind(end);
        }
        Prefix::Sa => {
            sql.push(format!("{start_col} >= "));
            sql.push_bind(end);
        }
        Prefix::Eb => {
            sql.push(format!("{end_col} <= "));
            sql.push_bind(start);
        }
    }
}

/// `_include=[type]:patient|subject|encounter`: the patient-centric references the gateway
/// follows. The target is read only where consent covers it.
fn include_target(resource_type: ResourceType, value: &str) -> Result<ResourceType, AppError> {
    let unsupported = || {
        AppError::NotSupported(
            "_include supports [type]:patient, [type]:subject and [type]:encounter of the searched type".into(),
        )
    };
    let (source, param) = value.split_once(':').ok_or_else(unsupported)?;
    if source != resource_type.code() || resource_type == ResourceType::Patient {
        return Err(unsupported());
    }
    match param.split(':').next() {
        Some("patient" | "subject") => Ok(ResourceType::Patient),
        Some("encounter") if resource_type != ResourceType::Encounter => {
            Ok(ResourceType::Encounter)
        }
        _ => Err(unsupported()),
    }
}

/// `_revinclude=[type]:patient|subject` (searching Patient) or `[type]:encounter` (searching
/// Encounter): records of `type` that reference the matches. Read only where consent covers
/// them, like `_include`.
fn revinclude_target(
    resource_type: ResourceType,
    value: &str,
) -> Result<(String, String), AppError> {
    let unsupported = || {
        AppError::NotSupported(
            "_revinclude supports [type]:patient or [type]:subject on Patient searches and [type]:encounter on Encounter searches".into(),
        )
    };
    let (source, param) = value.split_once(':').ok_or_else(unsupported)?;
    let source = resource::parse_type(source).map_err(|_| unsupported())?;
    let param = param.split(':').next().unwrap_or_default();
    match (resource_type, param) {
        (ResourceType::Patient, "patient" | "subject") if source != ResourceType::Patient => {
            Ok((source.code().to_owned(), "patient".to_owned()))
        }
        (ResourceType::Encounter, "encounter")
            if !matches!(source, ResourceType::Patient | ResourceType::Encounter) =>
        {
            Ok((source.code().to_owned(), "encounter".to_owned()))
        }
        _ => Err(unsupported()),
    }
}

fn token_values(value: &str) -> Result<Vec<String>, AppError> {
    let values: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect();
    if values.is_empty() || values.len() > 50 {
        return Err(AppError::Invalid(
            "a token parameter needs 1 to 50 values".into(),
        ));
    }
    Ok(values)
}

/// One page of matches.
#[derive(Debug, Clone)]
pub struct Page {
    /// Matches in the requester's view (the whole compartment search, not just this page);
    /// `None` with `_total=none`.
    pub total: Option<i64>,
    /// `(resource_type, id)` of the page's records, in order.
    pub keys: Vec<(String, String)>,
    /// The cursor of the next page, when there is one.
    pub next: Option<String>,
}

/// What the search cursors are sealed for (another kind of sealed state never opens as one).
const CURSOR_AAD: &[u8] = b"carechain/cursor";

/// Opens a search cursor for `requester`; returns the query and the keyset position.
pub fn resume(
    codec: &CursorCodec,
    token: &str,
    requester: Address,
) -> Result<(SearchQuery, (i64, String)), AppError> {
    codec.open_cursor(token, CURSOR_AAD, requester)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The distinct patients with a match for `query` (any patient), at most `limit`; index
/// metadata only, for deciding which of them the requester may search.
pub async fn candidate_patients(
    pool: &sqlx::PgPool,
    hasher: &SearchTermHasher,
    query: &SearchQuery,
    limit: usize,
) -> Result<Vec<String>, AppError> {
    let mut sql = QueryBuilder::<Postgres>::new("SELECT DISTINCT patient");
    query.filters(&mut sql, hasher, None)?;
    sql.push(" LIMIT ");
    sql.push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    Ok(sql.build_query_scalar().fetch_all(pool).await?)
}

/// Runs a search page over the records of `patients` (whose consent has been decided):
/// counts every match, returns the page after `after`.
pub async fn run(
    pool: &sqlx::PgPool,
    hasher: &SearchTermHasher,
    codec: &CursorCodec,
    query: &SearchQuery,
    patients: &[String],
    after: Option<&(i64, String)>,
    requester: Address,
) -> Result<Page, AppError> {
    let total = if query.no_total {
        None
    } else {
        let mut count_sql = QueryBuilder::<Postgres>::new("SELECT count(*)");
        query.filters(&mut count_sql, hasher, Some(patients))?;
        Some(
            count_sql
                .build_query_scalar::<i64>()
                .fetch_one(pool)
                .await?,
        )
    };
    if query.count == 0 {
        return Ok(Page {
            total,
            keys: Vec::new(),
            next: None,
        });
    }
    let column = query.sort.column();
    let mut page_sql =
        QueryBuilder::<Postgres>::new(format!("SELECT resource_type, id, {column} AS sort_key"));
    query.filters(&mut page_sql, hasher, Some(patients))?;
    let (cmp, dir) = if query.sort.descending() {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some((value, id)) = after {
        let value = DateTime::<Utc>::from_timestamp_micros(*value)
            .ok_or_else(|| AppError::Invalid("the paging cursor is invalid".into()))?;
        page_sql.push(format!(" AND ({column}, id) {cmp} ("));
        page_sql.push_bind(value);
        page_sql.push(", ");
        page_sql.push_bind(id.clone());
        page_sql.push(")");
    }
    page_sql.push(format!(" ORDER BY {column} {dir}, id {dir} LIMIT "));
    page_sql.push_bind(i64::try_from(query.count + 1).unwrap_or(i64::MAX));
    let mut rows: Vec<(String, String, DateTime<Utc>)> =
        page_sql.build_query_as().fetch_all(pool).await?;
    let more = rows.len() > query.count;
    rows.truncate(query.count);
    let next = match (more, rows.last()) {
        (true, Some((_, id, key))) => {
            Some(codec.seal_cursor(query, requester, (micros(*key), id.clone()), CURSOR_AAD)?)
        }
        _ => None,
    };
    Ok(Page {
        total,
        keys: rows.into_iter().map(|(t, id, _)| (t, id)).collect(),
        next,
    })
}

/// The `_sort` code of a query (for self links).
pub fn sort_code(query: &SearchQuery) -> &'static str {
    query.sort.code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

    const P: &str = "0x00000000000000000000000000000000000000aa";

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn parses_and_clamps() {
        let q = SearchQuery::parse(
            ResourceType::Observation,
            &params(&[
                ("patient", &format!("Patient/{P}")),
                ("_count", "5000"),
                ("code", "a|b,c"),
            ]),
            20,
            100,
        )
        .expect("query");
        assert_eq!(q.patient, P);
        assert_eq!(q.count, 100);
        assert_eq!(q.code, vec![vec!["a|b".to_owned(), "c".to_owned()]]);
        // Without `patient`: a search across the patients consent allows.
        let across = SearchQuery::parse(
            ResourceType::Observation,
            &params(&[("code", "x")]),
            20,
            100,
        )
        .expect("across patients");
        assert!(across.patient.is_empty());
        assert!(
            SearchQuery::parse(
                ResourceType::Observation,
                &params(&[
                    ("patient", P),
                    ("subject", "0x00000000000000000000000000000000000000bb")
                ]),
                20,
                100
            )
            .is_err()
        );
        assert!(
            SearchQuery::parse(
                ResourceType::Observation,
                &params(&[("patient", P), ("foo", "1")]),
                20,
                100
            )
            .is_err()
        );
        assert!(
            SearchQuery::parse(
                ResourceType::Observation,
                &params(&[("patient", P), ("_count", "-1")]),
                20,
                100
            )
            .is_err()
        );
        assert!(
            SearchQuery::parse(
                ResourceType::Observation,
                &params(&[("patient", P), ("date", "2020-13")]),
                20,
                100
            )
            .is_err()
        );
        assert!(
            SearchQuery::parse(
                ResourceType::Patient,
                &params(&[("patient", P), ("code", "x")]),
                20,
                100
            )
            .is_err()
        );
    }

    #[test]
    fn cursors_are_sealed_and_bound() {
        let codec = CursorCodec::new(SecretKey::generate());
        let q = SearchQuery::parse(
            ResourceType::Observation,
            &params(&[("patient", P), ("code", "secret-code")]),
            20,
            100,
        )
        .expect("query");
        let me = Address::repeat_byte(1);
        let token = codec
            .seal_cursor(&q, me, (5, String::from("x")), CURSOR_AAD)
            .expect("seal");
        assert!(
            !String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(&token).expect("b64"))
                .contains("secret-code")
        );
        assert_eq!(
            resume(&codec, &token, me).expect("resume"),
            (q, (5, "x".into()))
        );
        assert!(resume(&codec, &token, Address::repeat_byte(2)).is_err());
        assert!(resume(&codec, "garbage", me).is_err());
    }
}
