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

/// The SQLite file of the dev broker, inside its directory.
pub const TANSU_DB: &str = "tansu.db";

/// Tansu 0.6's own schema for record headers (`ddl/040-header.sql`), repeated so that the table
/// can exist before Tansu first starts; Tansu's `create table if not exists` then keeps it.
const HEADER_TABLE: &str = "create table if not exists header (
    topition integer,
    offset_id integer,
    k blob,
    v blob,
    last_updated datetime default current_timestamp not null,
    created_at datetime default current_timestamp not null,
    foreign key (topition, offset_id) references record (topition, offset_id) on delete cascade
)";

/// The index Tansu 0.6 lacks: it looks up the headers of every record it fetches by
/// `(topition, offset_id)`, and without this index each lookup scans the whole table, so a fetch
/// costs O(records with headers ever produced) per record and the broker grinds to a halt after
/// ~100k headed records (fluxo's outputs all carry a `fluxo-id` header).
const HEADER_INDEX: &str =
    "create index if not exists fluxo_header_by_record on header (topition, offset_id)";

/// Make sure the broker database at `db` has the header index, creating the database (just the
/// header table) when it does not exist yet. Done before Tansu starts, so nothing else holds
/// the file.
///
/// # Errors
/// When the file cannot be opened or written as SQLite.
pub fn index_headers(db: &Path) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(db)
        .with_context(|| format!("opening the broker database {}", db.display()))?;
    conn.execute_batch(&format!("{HEADER_TABLE};\n{HEADER_INDEX};"))
        .with_context(|| format!("indexing record headers in {}", db.display()))?;
    Ok(())
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
        index_headers(&dir.join(TANSU_DB))?;
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
            .args(["--storage-engine", &format!("sqlite://{TANSU_DB}")])
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
    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn indexes(db: &Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(db).unwrap();
        let mut stmt = conn
            .prepare("select name from sqlite_master where type = 'index' and tbl_name = 'header'")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_fresh_broker_database_gets_the_header_table_and_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(TANSU_DB);
        index_headers(&db).unwrap();
        assert_eq!(indexes(&db), vec!["fluxo_header_by_record".to_string()]);
        // Idempotent: a restart over the same directory changes nothing.
        index_headers(&db).unwrap();
        assert_eq!(indexes(&db), vec!["fluxo_header_by_record".to_string()]);
    }

    #[test]
    fn an_existing_header_table_with_rows_is_indexed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(TANSU_DB);
        {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch(HEADER_TABLE).unwrap();
            // Tansu's record table is not there; the row only needs to exist.
            conn.execute_batch("pragma foreign_keys = off").unwrap();
            conn.execute(
                "insert into header (topition, offset_id, k, v) values (1, 7, x'6b', x'76')",
                [],
            )
            .unwrap();
        }
        index_headers(&db).unwrap();
        assert_eq!(indexes(&db), vec!["fluxo_header_by_record".to_string()]);
        let conn = rusqlite::Connection::open(&db).unwrap();
        let n: i64 = conn
            .query_row("select count(*) from header where offset_id = 7", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(n, 1);
    }
}
