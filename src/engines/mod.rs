//! The real engines fluxo runs on in development and tests, started from Maven Central
//! artifacts: Apache Kafka ([`kafka`]) and Apache Cassandra ([`cassandra`], the CQL stand-in for
//! ScyllaDB).
//!
//! Each engine has one launcher, a shell script under `scripts/` (`scripts/kafka DATA_DIR PORT`,
//! `scripts/cassandra DATA_DIR PORT`) that fetches and caches the artifacts, writes the engine's
//! configuration, runs it in the foreground and prints `ready` once it serves. People run the
//! scripts by hand; fluxo embeds the same text (so an installed binary needs no checkout) and
//! runs it as a [`Service`] in a process group of its own, so that stopping or killing the group
//! reaches the JVM behind the script.

pub mod cassandra;
pub mod kafka;

use anyhow::Context as _;
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where fluxo caches engine artifacts: `$FLUXO_CACHE_DIR`, else `~/.cache/fluxo`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("FLUXO_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/fluxo")))
        .unwrap_or_else(|| PathBuf::from(".cache/fluxo"))
}

/// An engine started from its launcher script, in a process group of its own; stopped (the
/// whole group) when dropped.
pub struct Service {
    /// The launcher (`bash`), leader of the process group.
    child: Child,
    /// The engine's name, for messages.
    name: &'static str,
    /// The data directory the launcher was given (it writes `<name>.pid` and its log there).
    dir: PathBuf,
}

impl Service {
    /// Run `script` (the text of a launcher) with `args`, extra environment `env`, and wait up to
    /// `timeout` for it to print `ready`. Its stderr goes to ours (first-run fetch messages,
    /// start failures); its stdout is drained after `ready`.
    ///
    /// # Errors
    /// When bash cannot be started, or the launcher exits or stays silent past `timeout`.
    pub fn start(
        name: &'static str,
        script: &str,
        dir: &Path,
        args: &[String],
        env: &[(&str, String)],
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the {name} directory {}", dir.display()))?;
        let mut cmd = Command::new("bash");
        cmd.arg("-c").arg(script).arg(name).arg(dir).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the {name} launcher (is bash installed?)"))?;
        // Whatever way this process ends (a signal before its handlers are installed, a
        // panic, SIGKILL), the engine must not outlive it.
        if let Err(e) = stop_with_process(child.id(), std::process::id(), None) {
            let _ = child.kill();
            return Err(e);
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("{name}-stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line.trim() == "ready" {
                        let _ = tx.send(());
                    }
                }
            })
            .context("spawning a reader thread")?;
        let mut service = Self {
            child,
            name,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(()) => return Ok(service),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if !service.is_running() {
                        anyhow::bail!(
                            "{name} exited while starting; its log is in {}",
                            dir.display()
                        );
                    }
                }
                Err(_) => {
                    service.kill();
                    anyhow::bail!(
                        "{name} was not ready after {timeout:?}; its log is in {}",
                        dir.display()
                    );
                }
            }
        }
    }

    /// The launcher's process id, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The engine's JVM process id, as its launcher recorded it.
    pub fn engine_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{}.pid", self.name)))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// True while the launcher runs (it exits when the engine does).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stop gracefully: SIGTERM to the group, SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        signal_group(self.pid(), "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() && !self.engine_alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGKILL the whole group (launcher and JVM), as a crash would.
    pub fn kill(&mut self) {
        signal_group(self.pid(), "KILL");
        let _ = self.child.wait();
    }

    fn engine_alive(&self) -> bool {
        self.engine_pid()
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.is_running() || self.engine_alive() {
            self.stop(Duration::from_secs(15));
        }
    }
}

/// Send `signal` (`TERM`, `KILL`, `STOP`, `CONT`) to process group `pgid`.
pub fn signal_group(pgid: u32, signal: &str) {
    // `kill` the command: no unsafe libc call needed for a signal.
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// Stop process group `pgid` once the process `owner` has exited, whatever way it exits, then
/// remove `cleanup` (the engine's data directory) if given: test binaries keep their engines in
/// statics, which are never dropped.
// The watchdog outlives the caller by design; init reaps it.
#[allow(clippy::zombie_processes)]
pub fn stop_with_process(pgid: u32, owner: u32, cleanup: Option<&Path>) -> anyhow::Result<()> {
    // dash's `kill` takes `-SIG -PGID` (no `--`).
    let script = "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; \
         kill -TERM -\"$2\" 2>/dev/null; \
         for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 -\"$2\" 2>/dev/null || break; sleep 1; done; \
         kill -KILL -\"$2\" 2>/dev/null; \
         if [ -n \"$3\" ]; then rm -rf \"$3\"; fi";
    Command::new("sh")
        .args([
            "-c",
            script,
            "watchdog",
            &owner.to_string(),
            &pgid.to_string(),
        ])
        .arg(cleanup.map(Path::as_os_str).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawning an engine watchdog")?;
    Ok(())
}

/// A fresh directory `<tmp>/<prefix>-<pid>-<n>` for an engine's data (removed by the watchdog of
/// [`stop_with_process`], not on drop).
///
/// # Errors
/// When it cannot be created.
pub fn scratch_dir(prefix: &str) -> std::io::Result<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&path)?;
    Ok(path)
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

/// A free loopback port (free when asked; another process may take it before it is used).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
