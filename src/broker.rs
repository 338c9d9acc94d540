//! The development broker: Tansu (a Kafka-protocol broker in Rust), installed and started by
//! `fluxo up`.
//!
//! Tansu is found as `$FLUXO_TANSU_BIN`, then `tansu` on the `PATH`, then in fluxo's cache
//! (`~/.cache/fluxo/tansu/bin/tansu`); when it is nowhere, `fluxo up` installs it there with
//! `cargo install` (about 8 minutes on 2 cores, once). It runs with the SQLite storage engine in
//! the data directory, so topics survive a restart.

use anyhow::Context as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Tansu version fluxo is tested with.
pub const TANSU_VERSION: &str = "0.6.0";

/// Where fluxo caches the Tansu install.
pub fn cache_root() -> PathBuf {
    std::env::var_os("FLUXO_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fluxo")))
        .unwrap_or_else(|| PathBuf::from(".cache/fluxo"))
        .join("tansu")
}

/// The Tansu binary, if one is installed.
pub fn find_tansu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FLUXO_TANSU_BIN").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("tansu");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let cached = cache_root().join("bin/tansu");
    cached.is_file().then_some(cached)
}

/// Find Tansu or install it into the cache with cargo.
///
/// # Errors
/// When cargo is missing or the install fails.
pub fn ensure_tansu() -> anyhow::Result<PathBuf> {
    if let Some(p) = find_tansu() {
        return Ok(p);
    }
    let root = cache_root();
    eprintln!(
        "fluxo: the Tansu broker is not installed; installing tansu {TANSU_VERSION} into {} \
         (cargo install, about 8 minutes on 2 cores, done once)",
        root.display()
    );
    let status = Command::new("cargo")
        .args([
            "install",
            "tansu",
            "--version",
            TANSU_VERSION,
            "--locked",
            "--features",
            "dynostore,libsql",
            "--root",
        ])
        .arg(&root)
        .status()
        .context("running cargo install tansu (is cargo on the PATH?)")?;
    anyhow::ensure!(status.success(), "cargo install tansu failed: {status}");
    find_tansu().context("tansu was installed but its binary is not where expected")
}

/// A running Tansu broker, stopped when dropped.
pub struct Broker {
    child: Child,
    /// Its `host:port`.
    pub address: String,
}

impl Broker {
    /// Start Tansu on `address` (`host:port`) with its SQLite file under `dir`.
    ///
    /// # Errors
    /// When the binary cannot be started.
    pub fn start(tansu: &Path, address: &str, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating broker directory {}", dir.display()))?;
        let log = std::fs::File::create(dir.join("tansu.log"))?;
        let url = format!("tcp://{address}");
        // Tansu resolves the sqlite path relative to its working directory.
        let child = Command::new(tansu)
            .current_dir(dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env(
                "RUST_LOG",
                std::env::var("FLUXO_BROKER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", tansu.display()))?;
        Ok(Self {
            child,
            address: address.to_string(),
        })
    }

    /// True while the broker process is alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stop the broker: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let pid = self.child.id();
        // SAFETY-free: `kill` is an external command, so no unsafe libc call is needed.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.is_running() {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// True when something accepts TCP connections at `address`.
pub fn is_listening(address: &str) -> bool {
    use std::net::ToSocketAddrs;
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
        })
}
