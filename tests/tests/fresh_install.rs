//! The fresh-machine path of the README's commands: the npm install step, run in a scratch copy
//! of the repository with no `node_modules`, installs the pinned Foundry binaries and solc from
//! the registry and leaves every tracked file as it was.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the files git tracks (as they are in the working tree), committed in a new
/// repository: what `git clone` gives a new user.
fn scratch_clone() -> PathBuf {
    let root = carechain_testkit::repo_root();
    let dir = std::env::temp_dir().join(format!("carechain-fresh-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {dir:?}: {e}"));
    let listed = run(&root, "git", &["ls-files", "-z"]);
    for relative in listed.split('\0').filter(|p| !p.is_empty()) {
        let from = root.join(relative);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = dir.join(relative);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {parent:?}: {e}"));
        }
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {relative}: {e}"));
    }
    run(&dir, "git", &["init", "-q"]);
    run(&dir, "git", &["add", "-A"]);
    run(
        &dir,
        "git",
        &[
            "-c",
            "user.name=fresh",
            "-c",
            "user.email=fresh@example.invalid",
            "commit",
            "-q",
            "-m",
            "clone",
        ],
    );
    dir
}

fn pinned(dir: &Path, package: &str) -> String {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package.json")).unwrap_or_default(),
    )
    .unwrap_or(serde_json::Value::Null);
    manifest["devDependencies"][package]
        .as_str()
        .unwrap_or_else(|| panic!("package.json pins no {package}"))
        .to_owned()
}

#[test]
fn the_npm_install_step_on_an_empty_node_modules_pins_binaries_and_leaves_the_tree_clean() {
    let dir = scratch_clone();
    assert!(!dir.join("node_modules").exists());
    // As on a new machine: nothing of this run's toolchain settings leaks in.
    let out = Command::new("bash")
        .args(["-c", "source scripts/lib.sh && ensure_node_deps"])
        .current_dir(&dir)
        .env_remove("FORGE_BIN")
        .env_remove("ANVIL_BIN")
        .env_remove("CAST_BIN")
        .env_remove("REPO_ROOT")
        .env_remove("CARECHAIN_LIB_SOURCED")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run the install step: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install step failed:\n{said}");
    assert!(said.contains("npm ci"), "installed with npm ci:\n{said}");

    for tool in ["forge", "anvil", "cast"] {
        let binary = dir.join(format!(
            "node_modules/@foundry-rs/{tool}-linux-amd64/bin/{tool}"
        ));
        let version = run(&dir, binary.to_str().unwrap_or_default(), &["--version"]);
        let want = pinned(&dir, &format!("@foundry-rs/{tool}"));
        assert!(
            version.lines().next().unwrap_or_default().contains(&want),
            "{tool} is not {want}: {version}"
        );
    }
    let solc = run(&dir, "tools/solc", &["--version"]);
    assert!(
        solc.contains(&format!("Version: {}", pinned(&dir, "solc"))),
        "{solc}"
    );

    let status = run(&dir, "git", &["status", "--porcelain"]);
    assert!(status.is_empty(), "tracked files changed:\n{status}");

    // A second run finds everything in place and installs nothing.
    let again = Command::new("bash")
        .args(["-c", "source scripts/lib.sh && ensure_node_deps"])
        .current_dir(&dir)
        .env_remove("FORGE_BIN")
        .env_remove("ANVIL_BIN")
        .env_remove("CAST_BIN")
        .env_remove("REPO_ROOT")
        .env_remove("CARECHAIN_LIB_SOURCED")
        .output()
        .unwrap_or_else(|e| panic!("run the install step again: {e}"));
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("npm ci"));
    let _ = std::fs::remove_dir_all(&dir);
}
