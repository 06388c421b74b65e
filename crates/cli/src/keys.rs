//! Keys: Web3 Secret Storage keystores (the format of `cast wallet` and geth) in a keystore
//! directory, or a raw private key in `CARECHAIN_PRIVATE_KEY` for development.
//!
//! A key is never printed, logged, put on a command line or written unencrypted: only
//! addresses are shown. Keystore files are created `0600` in a `0700` directory.

use crate::prompt;
use alloy::{
    primitives::{Address, B256},
    signers::local::PrivateKeySigner,
};
use std::{
    fs,
    io::{BufRead, IsTerminal},
    path::{Path, PathBuf},
};

/// Environment variable with a raw private key, for development chains only.
pub(crate) const PRIVATE_KEY_ENV: &str = "CARECHAIN_PRIVATE_KEY";
/// Environment variable with the keystore password, for scripts.
pub(crate) const PASSWORD_ENV: &str = "CARECHAIN_KEYSTORE_PASSWORD";

/// Why a key could not be created, found or unlocked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    /// Neither a keystore nor the development variable was given.
    #[error(
        "no signing key: pass --key NAME (a keystore, see `carechain keys list`; create one with `carechain keys new`), or for development set {PRIVATE_KEY_ENV}"
    )]
    NoKey,
    /// No keystore of that name or path.
    #[error(
        "no keystore `{name}` in {dir} and no such file: see `carechain keys list`, or pass a path to a keystore file"
    )]
    NotFound {
        /// The name given.
        name: String,
        /// The keystore directory searched.
        dir: PathBuf,
    },
    /// The password does not open the keystore.
    #[error(
        "wrong password for keystore {0} (check --password-file or {PASSWORD_ENV}, or type it again)"
    )]
    WrongPassword(PathBuf),
    /// The keystore file is not a Web3 Secret Storage keystore.
    #[error("{path} is not a readable keystore: {reason}")]
    BadKeystore {
        /// The file.
        path: PathBuf,
        /// What the keystore library said.
        reason: String,
    },
    /// No password source and no terminal to ask on.
    #[error(
        "no password: there is no terminal to ask on; pass --password-file FILE or set {PASSWORD_ENV}"
    )]
    NoPassword,
    /// An empty password.
    #[error("the password is empty: a keystore needs a password")]
    EmptyPassword,
    /// The two typed passwords differ.
    #[error("the passwords differ: nothing was created")]
    PasswordMismatch,
    /// The name already names a keystore.
    #[error(
        "a keystore named `{0}` already exists: choose another --name (see `carechain keys list`)"
    )]
    Exists(String),
    /// The name is not a plain file name.
    #[error(
        "`{0}` is not a usable keystore name: use letters, digits, '.', '_' or '-' (at most 64, not starting with '.')"
    )]
    BadName(String),
    /// The text is not a 32-byte hex private key.
    #[error("{0} is not a private key (64 hex digits, 0x optional)")]
    BadPrivateKey(&'static str),
    /// The keystore directory cannot be determined.
    #[error(
        "cannot tell where the keystore directory is (no HOME or XDG_CONFIG_HOME): pass --keystore-dir or set CARECHAIN_KEYSTORE_DIR"
    )]
    NoDirectory,
    /// A file system error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.to_owned();
    move |source| KeyError::Io { what, path, source }
}

/// Where the keystores are.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KeystoreDirArgs {
    /// Keystore directory [default: $XDG_CONFIG_HOME/carechain/keystore, else
    /// ~/.config/carechain/keystore].
    #[arg(long, env = "CARECHAIN_KEYSTORE_DIR", value_name = "DIR")]
    pub(crate) keystore_dir: Option<PathBuf>,
}

impl KeystoreDirArgs {
    /// The keystore directory.
    pub(crate) fn dir(&self) -> Result<PathBuf, KeyError> {
        if let Some(dir) = &self.keystore_dir {
            return Ok(dir.clone());
        }
        Ok(crate::config_dir()
            .ok_or(KeyError::NoDirectory)?
            .join("keystore"))
    }
}

/// Where the keystore password comes from.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PasswordArgs {
    /// File whose first line is the keystore password (else CARECHAIN_KEYSTORE_PASSWORD, else
    /// a prompt on the terminal).
    #[arg(long, env = "CARECHAIN_PASSWORD_FILE", value_name = "FILE")]
    pub(crate) password_file: Option<PathBuf>,
}

impl PasswordArgs {
    /// A password given without a prompt, if any.
    fn given(&self) -> Result<Option<String>, KeyError> {
        if let Some(path) = &self.password_file {
            let text = fs::read_to_string(path).map_err(io("cannot read password file", path))?;
            let line = text.lines().next().unwrap_or("").to_owned();
            return Ok(Some(line));
        }
        Ok(std::env::var(PASSWORD_ENV).ok())
    }

    /// The password to open an existing keystore.
    fn to_open(&self, path: &Path) -> Result<String, KeyError> {
        if let Some(password) = self.given()? {
            return Ok(password);
        }
        if !prompt::interactive() {
            return Err(KeyError::NoPassword);
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        prompt::secret(&format!(
            "Password for keystore {}: ",
            name.unwrap_or_default()
        ))
        .map_err(|e| KeyError::BadKeystore {
            path: path.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The password for a new keystore (asked twice on a terminal).
    fn to_create(&self) -> Result<String, KeyError> {
        let password = match self.given()? {
            Some(password) => password,
            None => {
                if !prompt::interactive() {
                    return Err(KeyError::NoPassword);
                }
                let ask = |p: &str| {
                    prompt::secret(p).map_err(|e| KeyError::Io {
                        what: "cannot read the password from",
                        path: PathBuf::from("the terminal"),
                        source: std::io::Error::other(e.to_string()),
                    })
                };
                let first = ask("New keystore password: ")?;
                let second = ask("Repeat the password: ")?;
                if first != second {
                    return Err(KeyError::PasswordMismatch);
                }
                first
            }
        };
        if password.is_empty() {
            return Err(KeyError::EmptyPassword);
        }
        Ok(password)
    }
}

/// The key a command signs with.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct KeyArgs {
    /// Keystore to sign with: a name in the keystore directory (`carechain keys list`) or a path
    /// to a keystore file. Without it, the development key in CARECHAIN_PRIVATE_KEY is used.
    #[arg(long, env = "CARECHAIN_KEY", value_name = "NAME|PATH")]
    pub(crate) key: Option<String>,
    #[command(flatten)]
    pub(crate) dir: KeystoreDirArgs,
    #[command(flatten)]
    pub(crate) password: PasswordArgs,
}

impl KeyArgs {
    /// Whether any key source is configured (without unlocking it).
    pub(crate) fn configured(&self) -> bool {
        self.key.is_some() || std::env::var_os(PRIVATE_KEY_ENV).is_some()
    }

    /// Unlocks the key.
    pub(crate) fn signer(&self) -> Result<PrivateKeySigner, KeyError> {
        if let Some(name) = &self.key {
            let path = self.resolve(name)?;
            let password = self.password.to_open(&path)?;
            return decrypt(&path, &password);
        }
        if let Ok(text) = std::env::var(PRIVATE_KEY_ENV) {
            let signer = parse_private_key(&text, PRIVATE_KEY_ENV)?;
            eprintln!(
                "note: signing with the development key from {PRIVATE_KEY_ENV} ({})",
                signer.address()
            );
            return Ok(signer);
        }
        Err(KeyError::NoKey)
    }

    fn resolve(&self, name: &str) -> Result<PathBuf, KeyError> {
        let dir = self.dir.dir()?;
        let in_dir = dir.join(name);
        if valid_name(name) && in_dir.is_file() {
            return Ok(in_dir);
        }
        let as_path = PathBuf::from(name);
        if as_path.is_file() {
            return Ok(as_path);
        }
        Err(KeyError::NotFound {
            name: name.to_owned(),
            dir,
        })
    }
}

/// Parses a hex private key; `source` names where it came from (never the key itself).
pub(crate) fn parse_private_key(
    text: &str,
    source: &'static str,
) -> Result<PrivateKeySigner, KeyError> {
    let text = text.trim();
    let hex = text.strip_prefix("0x").unwrap_or(text);
    if hex.len() != 64 {
        return Err(KeyError::BadPrivateKey(source));
    }
    let bytes: B256 = hex.parse().map_err(|_| KeyError::BadPrivateKey(source))?;
    PrivateKeySigner::from_bytes(&bytes).map_err(|_| KeyError::BadPrivateKey(source))
}

/// Decrypts the keystore at `path`.
pub(crate) fn decrypt(path: &Path, password: &str) -> Result<PrivateKeySigner, KeyError> {
    let secret = eth_keystore::decrypt_key(path, password).map_err(|e| match e {
        eth_keystore::KeystoreError::MacMismatch => KeyError::WrongPassword(path.to_owned()),
        other => KeyError::BadKeystore {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })?;
    PrivateKeySigner::from_slice(&secret).map_err(|e| KeyError::BadKeystore {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn create_dir(dir: &Path) -> Result<(), KeyError> {
    fs::create_dir_all(dir).map_err(io("cannot create keystore directory", dir))?;
    set_mode(dir, 0o700)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io("cannot restrict permissions of", path))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), KeyError> {
    Ok(())
}

/// Encrypts `signer` into `dir/name`, adds the geth `address` field, restricts the file.
fn store(
    dir: &Path,
    name: &str,
    signer: &PrivateKeySigner,
    password: &str,
) -> Result<PathBuf, KeyError> {
    if !valid_name(name) {
        return Err(KeyError::BadName(name.to_owned()));
    }
    create_dir(dir)?;
    let path = dir.join(name);
    if path.exists() {
        return Err(KeyError::Exists(name.to_owned()));
    }
    let bad = |reason: String| KeyError::BadKeystore {
        path: path.clone(),
        reason,
    };
    eth_keystore::encrypt_key(
        dir,
        &mut rand::thread_rng(),
        signer.to_bytes(),
        password,
        Some(name),
    )
    .map_err(|e| bad(e.to_string()))?;
    set_mode(&path, 0o600)?;
    // geth and cast record the address so that listing needs no password.
    let text = fs::read_to_string(&path).map_err(io("cannot read keystore", &path))?;
    let mut json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if let Some(object) = json.as_object_mut() {
        object.insert(
            "address".into(),
            alloy::hex::encode(signer.address()).into(),
        );
    }
    let with_address = serde_json::to_string(&json).map_err(|e| bad(e.to_string()))?;
    fs::write(&path, with_address).map_err(io("cannot write keystore", &path))?;
    Ok(path)
}

/// `keys new`: a fresh random key in a new keystore.
pub(crate) fn new_key(
    dir: &KeystoreDirArgs,
    password: &PasswordArgs,
    name: &str,
) -> Result<(), KeyError> {
    let dir = dir.dir()?;
    if !valid_name(name) {
        return Err(KeyError::BadName(name.to_owned()));
    }
    if dir.join(name).exists() {
        return Err(KeyError::Exists(name.to_owned()));
    }
    let password = password.to_create()?;
    let signer = PrivateKeySigner::random();
    let path = store(&dir, name, &signer, &password)?;
    println!(
        "created keystore `{name}` for {} at {}",
        signer.address(),
        path.display()
    );
    Ok(())
}

/// Where `keys import` takes the key from.
#[derive(Debug, Clone)]
pub(crate) enum ImportSource {
    /// A private key typed at a hidden prompt, or one line on standard input.
    PrivateKey,
    /// An existing keystore file (cast, geth), opened with the password.
    Keystore(PathBuf),
}

/// `keys import`.
pub(crate) fn import_key(
    dir: &KeystoreDirArgs,
    password: &PasswordArgs,
    name: &str,
    source: ImportSource,
) -> Result<(), KeyError> {
    let dir = dir.dir()?;
    if !valid_name(name) {
        return Err(KeyError::BadName(name.to_owned()));
    }
    if dir.join(name).exists() {
        return Err(KeyError::Exists(name.to_owned()));
    }
    let (signer, password) = match source {
        ImportSource::PrivateKey => {
            let text = if std::io::stdin().is_terminal() {
                prompt::secret("Private key (hex, not shown): ").map_err(|e| KeyError::Io {
                    what: "cannot read the key from",
                    path: PathBuf::from("the terminal"),
                    source: std::io::Error::other(e.to_string()),
                })?
            } else {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .map_err(io("cannot read", Path::new("standard input")))?;
                line
            };
            let signer = parse_private_key(&text, "the imported text")?;
            (signer, password.to_create()?)
        }
        ImportSource::Keystore(path) => {
            let pass = password.to_open(&path)?;
            (decrypt(&path, &pass)?, pass)
        }
    };
    let path = store(&dir, name, &signer, &password)?;
    println!(
        "imported {} as keystore `{name}` at {}",
        signer.address(),
        path.display()
    );
    Ok(())
}

/// One keystore in the directory.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Listed {
    /// File name.
    pub(crate) name: String,
    /// Address recorded in the file, if any.
    pub(crate) address: Option<Address>,
    /// Full path.
    pub(crate) path: PathBuf,
}

/// `keys list`: the keystores in the directory (addresses read from the files, no password).
pub(crate) fn list_keys(dir: &KeystoreDirArgs, json: bool) -> Result<(), KeyError> {
    let dir = dir.dir()?;
    let listed = keystores_in(&dir)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&listed).unwrap_or_else(|_| "[]".into())
        );
        return Ok(());
    }
    if listed.is_empty() {
        println!(
            "no keystores in {} (create one with `carechain keys new --name NAME`)",
            dir.display()
        );
        return Ok(());
    }
    println!("keystores in {}:", dir.display());
    for key in listed {
        let address = key
            .address
            .map(|a| a.to_string())
            .unwrap_or_else(|| "(address not recorded)".into());
        println!("  {:<24} {address}", key.name);
    }
    Ok(())
}

/// The keystore name of `address` in the keystore directory the environment names (or the
/// default one), to show people by name in messages.
pub(crate) fn name_of(address: Address) -> Option<String> {
    let dir = KeystoreDirArgs {
        keystore_dir: std::env::var_os("CARECHAIN_KEYSTORE_DIR").map(PathBuf::from),
    }
    .dir()
    .ok()?;
    keystores_in(&dir)
        .ok()?
        .into_iter()
        .find(|k| k.address == Some(address))
        .map(|k| k.name)
}

/// The keystores in `dir`, by name (addresses read from the files, no password).
fn keystores_in(dir: &Path) -> Result<Vec<Listed>, KeyError> {
    let mut listed = Vec::new();
    if dir.is_dir() {
        let entries = fs::read_dir(dir).map_err(io("cannot read keystore directory", dir))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if value.get("crypto").is_none() && value.get("Crypto").is_none() {
                continue;
            }
            let address = value.get("address").and_then(|a| a.as_str()).and_then(|a| {
                let hex = a.strip_prefix("0x").unwrap_or(a);
                hex.parse::<Address>().ok()
            });
            listed.push(Listed {
                name: entry.file_name().to_string_lossy().into_owned(),
                address,
                path,
            });
        }
    }
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_file_names() {
        assert!(valid_name("patient-1.main"));
        for bad in ["", ".hidden", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn private_keys_parse_without_echo() {
        let key = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
        let signer = parse_private_key(&format!("0x{key}\n"), "test").expect("valid key");
        assert_eq!(
            signer.address().to_string(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        let err = parse_private_key(&key[1..], "the variable").expect_err("63 digits");
        assert!(!err.to_string().contains(&key[1..]), "{err}");
        assert!(parse_private_key(&"0".repeat(64), "zero").is_err());
    }
}
