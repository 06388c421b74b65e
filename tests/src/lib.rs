//! End-to-end harness: runs the README's first command (`scripts/stack`) in a private state
//! directory on free loopback ports, reads the settings it writes for other terminals, runs the
//! `carechain` CLI the way a user would, and stops the stack with Ctrl-C (SIGINT).
//!
//! Needs what the stack needs (it installs the rest itself); the test command builds the
//! workspace binaries first so the stack's own `cargo build` has nothing to do.

use carechain_testkit::{free_port, repo_root};
use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The ports and state directory of one private stack.
#[derive(Debug, Clone)]
pub struct StackPlace {
    /// State directory (`CARECHAIN_STACK_DIR`).
    pub dir: PathBuf,
    /// anvil's port.
    pub anvil: u16,
    /// PostgreSQL's port.
    pub pg: u16,
    /// The gateway's port.
    pub gateway: u16,
    /// The indexer's metrics port.
    pub metrics: u16,
}

impl StackPlace {
    /// A new state directory under the system temp dir and four free ports.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "carechain-e2e-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {dir:?}: {e}"));
        Self {
            dir,
            anvil: free_port(),
            pg: free_port(),
            gateway: free_port_run(),
            metrics: free_port_run(),
        }
    }

    /// Every port of the stack: anvil, PostgreSQL, the three gateways and the three indexers'
    /// metrics.
    pub fn ports(&self) -> Vec<u16> {
        vec![
            self.anvil,
            self.pg,
            self.gateway,
            self.gateway + 1,
            self.gateway + 2,
            self.metrics,
            self.metrics + 1,
            self.metrics + 2,
        ]
    }
}

/// A free port whose next two ports are free too: the stack runs three gateways (and three
/// indexers) on consecutive ports.
fn free_port_run() -> u16 {
    let bindable = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    loop {
        let port = free_port();
        if port < u16::MAX - 2 && bindable(port + 1) && bindable(port + 2) {
            return port;
        }
    }
}

/// A running `scripts/stack`.
#[derive(Debug)]
pub struct Stack {
    child: Option<Child>,
    /// Where it runs.
    pub place: StackPlace,
    output: Arc<Mutex<String>>,
    env: HashMap<String, String>,
}

/// Reads `export A=B C=D` lines (the stack's `env` and `demo.env` files).
fn read_exports(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    let mut vars = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("export ") else {
            continue;
        };
        for pair in rest.split_whitespace() {
            if let Some((name, value)) = pair.split_once('=') {
                vars.insert(name.to_owned(), value.trim_matches('"').to_owned());
            }
        }
    }
    vars
}

impl Stack {
    /// Starts the stack (`--reset` when asked) and waits until it reports that it runs.
    pub fn start(place: &StackPlace, reset: bool) -> Self {
        let mut command = Command::new("bash");
        command
            .arg(repo_root().join("scripts/stack"))
            .current_dir(repo_root())
            .env("CARECHAIN_STACK_DIR", &place.dir)
            .env("ANVIL_PORT", place.anvil.to_string())
            .env("PG_PORT", place.pg.to_string())
            .env("GATEWAY_PORT", place.gateway.to_string())
            .env("INDEXER_METRICS_PORT", place.metrics.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if reset {
            command.arg("--reset");
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start scripts/stack: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let mut stack = Self {
            child: Some(child),
            place: place.clone(),
            output,
            env: HashMap::new(),
        };
        stack.wait_output("Ctrl-C stops everything", Duration::from_secs(900));
        stack.env = read_exports(&place.dir.join("env"));
        stack.env.extend(read_exports(&place.dir.join("demo.env")));
        stack
    }

    /// Everything the stack printed so far.
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until the output contains `needle`; panics with the output on timeout or exit.
    pub fn wait_output(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(needle) {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "scripts/stack exited ({status}) before saying {needle:?}:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "scripts/stack never said {needle:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A setting from `.stack/env` or the demo cast in `.stack/demo.env`.
    pub fn var(&self, name: &str) -> String {
        self.env
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("the stack's settings have no {name}"))
    }

    /// The gateway's base URL.
    pub fn gateway(&self) -> String {
        self.var("CARECHAIN_GATEWAY_URL")
    }

    /// The stack's CA (`CARECHAIN_CA_FILE`): its gateway's HTTPS certificate chains to it.
    pub fn ca_file(&self) -> PathBuf {
        PathBuf::from(self.var("CARECHAIN_CA_FILE"))
    }

    /// An HTTP client that trusts the stack's CA (and nothing else).
    pub fn https_client(&self) -> reqwest::Client {
        carechain_tls::http::client_builder(&carechain_tls::Trust::CaFile(self.ca_file()))
            .and_then(|builder| {
                builder
                    .build()
                    .map_err(|e| carechain_tls::TlsError::HttpClient(e.to_string()))
            })
            .unwrap_or_else(|e| panic!("an HTTPS client trusting the stack's CA: {e}"))
    }

    /// Runs the `carechain` CLI built by the stack, with the stack's settings in its
    /// environment (as after `source .stack/env`) plus `env`; HOME points into the state
    /// directory so keys and tokens stay there.
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = Command::new(repo_root().join("target/debug/carechain"));
        command
            .args(args)
            .current_dir(&self.place.dir)
            .env("HOME", self.place.dir.join("home"))
            .env("XDG_CONFIG_HOME", self.place.dir.join("home/.config"))
            .stdin(Stdio::null());
        for (name, value) in &self.env {
            if name.starts_with("CARECHAIN_") {
                command.env(name, value);
            }
        }
        for (name, value) in env {
            command.env(name, value);
        }
        command
            .output()
            .unwrap_or_else(|e| panic!("run carechain {args:?}: {e}"))
    }

    /// Sends Ctrl-C (SIGINT) and waits for the stack to stop; returns its exit status and
    /// everything it printed.
    pub fn interrupt(self) -> (ExitStatus, String) {
        self.stop_with("-INT")
    }

    /// Sends SIGTERM (how a stack started in the background is stopped) and waits for the
    /// stack to stop; returns its exit status and everything it printed.
    pub fn terminate(self) -> (ExitStatus, String) {
        self.stop_with("-TERM")
    }

    fn stop_with(mut self, signal: &str) -> (ExitStatus, String) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("the stack was already stopped"));
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill {signal}: {e}"));
        assert!(status.success(), "kill {signal} failed");
        let deadline = Instant::now() + Duration::from_secs(120);
        let exit = loop {
            if let Ok(Some(exit)) = child.try_wait() {
                break exit;
            }
            assert!(
                Instant::now() < deadline,
                "the stack did not stop within 120 s of kill {signal}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // Let the reader threads take the last lines.
        std::thread::sleep(Duration::from_millis(300));
        (exit, self.output())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A failed test: stop the stack the way a user would, then make sure.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
        }
    }
}

/// The JSON value of a command's standard output, or a panic naming what it printed.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
