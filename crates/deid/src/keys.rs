//! The keyed material: the consortium's de-identification secret, the study key derived from it,
//! and every pseudonym, hash and date offset derived from the study key.
//!
//! ```text
//! K_study         = HMAC-SHA256(secret, "carechain-deid/v1/study" ‖ study)
//! pseudonym(w)    = uuid(HMAC-SHA256(K_study, "patient" ‖ w))          w: the 20 wallet bytes
//! offset(w)       = ±(1 + u64(HMAC-SHA256(K_study, "date-shift" ‖ w)) mod N)   days, never 0
//! id(uuid u)      = uuid(HMAC-SHA256(K_study, "uuid" ‖ u))             u: the 16 bytes
//! id(type, i)     = uuid(HMAC-SHA256(K_study, "id" ‖ custodian ‖ type ‖ i))
//! local(i)        = uuid(HMAC-SHA256(K_study, "local" ‖ i))            contained resources
//! value(v)        = HMAC-SHA256(K_study, "value" ‖ v)                  other cryptoHash values
//! ```
//!
//! Every variable-length part is length-prefixed (u32, big-endian), so no two inputs share an
//! encoding. `uuid(h)` is the first 16 bytes of `h` as an RFC 9562 version 8 (custom) UUID.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

/// The consortium's de-identification secret: every custodian holds it (configured, like a
/// key-encryption key), researchers never see it. Its bytes are wiped when it is dropped.
pub struct DeidSecret(Vec<u8>);

impl DeidSecret {
    /// The fewest bytes a secret may have.
    pub const MIN_LEN: usize = 32;

    /// A secret from raw bytes (at least [`DeidSecret::MIN_LEN`]).
    ///
    /// # Errors
    ///
    /// [`Error::SecretTooShort`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < Self::MIN_LEN {
            return Err(Error::SecretTooShort(bytes.len()));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// A secret written in hex (an optional `0x` first), as configuration files hold it.
    ///
    /// # Errors
    ///
    /// [`Error::SecretNotHex`] or [`Error::SecretTooShort`].
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        if !text.len().is_multiple_of(2) {
            return Err(Error::SecretNotHex);
        }
        let bytes = text
            .as_bytes()
            .chunks(2)
            .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or(Error::SecretNotHex)?;
        Self::from_bytes(&bytes)
    }
}

impl std::fmt::Debug for DeidSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeidSecret(..)")
    }
}

impl Drop for DeidSecret {
    fn drop(&mut self) {
        for byte in &mut self.0 {
            // Overwritten before the memory goes back; `black_box` keeps the writes.
            *byte = 0;
        }
        std::hint::black_box(&self.0);
    }
}

/// A patient's wallet address: the 20 bytes of `0x` + 40 hex digits (either case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Wallet(pub [u8; 20]);

impl Wallet {
    /// Parses `0x` followed by 40 hex digits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidWallet`].
    pub fn parse(text: &str) -> Result<Self, Error> {
        parse_wallet(text).ok_or(Error::InvalidWallet)
    }
}

impl std::str::FromStr for Wallet {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Self::parse(text)
    }
}

impl From<[u8; 20]> for Wallet {
    fn from(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }
}

pub(crate) fn parse_wallet(text: &str) -> Option<Wallet> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))?;
    decode_hex::<20>(hex).map(Wallet)
}

/// The 16 bytes of a UUID written `8-4-4-4-12` (either case).
pub(crate) fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut at = 0;
    for (i, byte) in out.iter_mut().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            if b[at] != b'-' {
                return None;
            }
            at += 1;
        }
        *byte = hex_value(b[at])? << 4 | hex_value(b[at + 1])?;
        at += 2;
    }
    Some(out)
}

fn decode_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks(2).enumerate() {
        out[i] = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
    }
    Some(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The study key, keyed once: each derivation clones the keyed HMAC state (no re-keying).
#[derive(Clone)]
pub(crate) struct StudyKey {
    mac: HmacSha256,
    custodian: Box<str>,
}

impl StudyKey {
    pub(crate) fn new(secret: &DeidSecret, study: &str, custodian: &str) -> Result<Self, Error> {
        if study.is_empty() {
            return Err(Error::EmptyStudy);
        }
        let mut outer = keyed(&secret.0);
        update_parts(&mut outer, &[b"carechain-deid/v1/study", study.as_bytes()]);
        let study_key = outer.finalize().into_bytes();
        Ok(Self {
            mac: keyed(&study_key),
            custodian: custodian.into(),
        })
    }

    fn derive(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        update_parts(&mut mac, parts);
        mac.finalize().into_bytes().into()
    }

    /// A patient's pseudonym in this study.
    pub(crate) fn pseudonym(&self, wallet: &Wallet) -> String {
        uuid_text(&self.derive(&[b"patient", &wallet.0]))
    }

    /// A patient's date offset in days: within ±`max_days`, never 0.
    pub(crate) fn date_offset(&self, wallet: &Wallet, max_days: u32) -> i32 {
        let h = self.derive(&[b"date-shift", &wallet.0]);
        let mut word = [0u8; 8];
        word.copy_from_slice(&h[..8]);
        let v = u64::from_be_bytes(word);
        // The low bit picks the sign, the rest the magnitude (bias below 2^-40 for N ≤ 3650).
        let magnitude = 1 + (v >> 1) % u64::from(max_days.max(1));
        let magnitude = i32::try_from(magnitude).unwrap_or(i32::MAX);
        if v & 1 == 0 { magnitude } else { -magnitude }
    }

    /// The id a resource gets: globally unique ids (UUIDs) hash alone, so copies of one
    /// resource at two custodians still join; any other id is only unique on its server, so the
    /// custodian and the type go in with it.
    pub(crate) fn resource_id(&self, resource_type: &str, id: &str) -> String {
        match parse_uuid(id) {
            Some(uuid) => self.uuid_id(&uuid),
            None => uuid_text(&self.derive(&[
                b"id",
                self.custodian.as_bytes(),
                resource_type.as_bytes(),
                id.as_bytes(),
            ])),
        }
    }

    /// The id for a UUID (a resource id or a `urn:uuid:` reference).
    pub(crate) fn uuid_id(&self, uuid: &[u8; 16]) -> String {
        uuid_text(&self.derive(&[b"uuid", uuid]))
    }

    /// The id of a contained resource (local to its container).
    pub(crate) fn local_id(&self, id: &str) -> String {
        uuid_text(&self.derive(&[b"local", id.as_bytes()]))
    }

    /// A keyed hash of any other value.
    pub(crate) fn value(&self, value: &str) -> [u8; 32] {
        self.derive(&[b"value", value.as_bytes()])
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

fn update_parts(mac: &mut HmacSha256, parts: &[&[u8]]) {
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(part);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The first 16 bytes as a version 8 (custom) UUID: `xxxxxxxx-xxxx-8xxx-Vxxx-xxxxxxxxxxxx`.
pub(crate) fn uuid_text(h: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut out = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// The first 16 bytes in lower-case hex (32 characters).
pub(crate) fn hex16(h: &[u8; 32]) -> String {
    let mut out = String::with_capacity(32);
    for byte in &h[..16] {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// The first 16 bytes as an OID under the UUID arc: `urn:oid:2.25.<decimal>`.
pub(crate) fn oid_text(h: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    format!("urn:oid:2.25.{}", u128::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> DeidSecret {
        DeidSecret::from_bytes(&[7u8; 32]).expect("32 bytes")
    }

    #[test]
    fn secrets_and_wallets_are_checked() {
        assert_eq!(
            DeidSecret::from_bytes(&[1u8; 31]).err(),
            Some(Error::SecretTooShort(31))
        );
        assert!(DeidSecret::from_hex(&"ab".repeat(32)).is_ok());
        assert_eq!(DeidSecret::from_hex("zz").err(), Some(Error::SecretNotHex));
        assert_eq!(format!("{:?}", secret()), "DeidSecret(..)");
        let lower = Wallet::parse("0x00000000000000000000000000000000000000aa");
        let upper = Wallet::parse("0x00000000000000000000000000000000000000AA");
        assert_eq!(lower, upper);
        assert!(Wallet::parse("0x1234").is_err());
        assert!(Wallet::parse("00000000000000000000000000000000000000aa").is_err());
    }

    #[test]
    fn derivations_depend_on_study_and_custodian_where_they_should() {
        let wallet = Wallet([0x11; 20]);
        let a = StudyKey::new(&secret(), "study-1", "org-a").expect("key");
        let b = StudyKey::new(&secret(), "study-1", "org-b").expect("key");
        let other = StudyKey::new(&secret(), "study-2", "org-a").expect("key");
        assert_eq!(a.pseudonym(&wallet), b.pseudonym(&wallet));
        assert_ne!(a.pseudonym(&wallet), other.pseudonym(&wallet));
        assert_eq!(a.date_offset(&wallet, 365), b.date_offset(&wallet, 365));
        let uuid = "5cbc121b-cd71-4428-b8b7-31e53eba8184";
        assert_eq!(
            a.resource_id("Encounter", uuid),
            b.resource_id("Encounter", uuid)
        );
        assert_eq!(
            a.resource_id("Encounter", uuid),
            a.resource_id("Claim", uuid)
        );
        assert_ne!(
            a.resource_id("Encounter", "42"),
            b.resource_id("Encounter", "42")
        );
        assert_ne!(
            a.resource_id("Encounter", "42"),
            a.resource_id("Claim", "42")
        );
        assert!(StudyKey::new(&secret(), "", "org-a").is_err());
    }

    #[test]
    fn offsets_stay_in_range_and_are_never_zero() {
        let key = StudyKey::new(&secret(), "study", "org").expect("key");
        let mut signs = [0usize; 2];
        for i in 0..2000u32 {
            let mut w = [0u8; 20];
            w[..4].copy_from_slice(&i.to_be_bytes());
            let offset = key.date_offset(&Wallet(w), 30);
            assert!(offset != 0 && (-30..=30).contains(&offset), "{offset}");
            signs[usize::from(offset > 0)] += 1;
        }
        assert!(signs[0] > 800 && signs[1] > 800, "{signs:?}");
    }

    #[test]
    fn formats() {
        let h = [0xffu8; 32];
        let uuid = uuid_text(&h);
        assert_eq!(uuid, "ffffffff-ffff-8fff-bfff-ffffffffffff");
        assert!(parse_uuid(&uuid).is_some());
        assert_eq!(hex16(&h).len(), 32);
        assert_eq!(oid_text(&h), format!("urn:oid:2.25.{}", u128::MAX));
        assert!(parse_uuid("5cbc121b-cd71-4428-b8b7-31e53eba818").is_none());
    }
}
