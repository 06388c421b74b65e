//! Where the repository and the Foundry binaries are.

use std::path::{Path, PathBuf};

/// The repository root (the workspace this kit is built in).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the repository root")
        .to_owned()
}

/// anvil: `ANVIL_BIN`, else the pinned npm package's native binary.
pub fn anvil_bin() -> PathBuf {
    foundry_bin("ANVIL_BIN", "anvil")
}

/// forge: `FORGE_BIN`, else the pinned npm package's native binary.
pub fn forge_bin() -> PathBuf {
    foundry_bin("FORGE_BIN", "forge")
}

/// cast: `CAST_BIN`, else the pinned npm package's native binary.
pub fn cast_bin() -> PathBuf {
    foundry_bin("CAST_BIN", "cast")
}

/// The binary `var` names, else where `scripts/lib.sh` finds it: the native binary in the
/// per-platform npm package (`FOUNDRY_PLATFORM`, default `linux-amd64`), else the npm wrapper.
/// The native binary is preferred because killing the wrapper would orphan the real process.
fn foundry_bin(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let platform =
        std::env::var("FOUNDRY_PLATFORM").unwrap_or_else(|_| String::from("linux-amd64"));
    let native = repo_root().join(format!(
        "node_modules/@foundry-rs/{name}-{platform}/bin/{name}"
    ));
    if native.exists() {
        return native;
    }
    repo_root().join("node_modules/.bin").join(name)
}
