//! Faults of the engines fluxo runs on, injected into real processes mid-stream: the Apache Kafka
//! broker SIGKILLed and restarted (same data directory, same port), the Cassandra node (the CQL
//! stand-in for ScyllaDB) SIGKILLed and restarted, and a store outage longer than the engine's
//! patience. Each checks the invariants against a reference computed from the input alone:
//! every daily balance exact (stored and last published), every price alert present, none
//! repeated where the guarantee says so, and what the operator sees meanwhile (`/readyz`, the
//! query API).
//!
//! The broker of this test binary is its own (so it can be killed); the tests run one at a time
//! ([`serial`]).

mod common;

use common::faults::*;
use common::ledger::*;
use common::*;
use fluxo::engines::kafka::Broker;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

const LEDGER: &str = "daily-consolidation";
const PRICES: &str = "price-change";

/// The broker of this binary: started on first use, killed and restarted by the tests.
struct OwnBroker {
    address: String,
    dir: PathBuf,
    broker: Option<Broker>,
}

impl OwnBroker {
    /// SIGKILL the broker (launcher and JVM), as a crash would.
    fn kill(&mut self) {
        if let Some(mut b) = self.broker.take() {
            b.kill();
        }
    }

    /// Start it again on the same port with the same data.
    fn restart(&mut self) {
        assert!(self.broker.is_none(), "the broker runs");
        self.broker =
            Some(Broker::start(&self.address, &self.dir).expect("restarting Apache Kafka"));
    }

    /// SIGSTOP (`STOP`) or SIGCONT (`CONT`) the broker's processes: a stalled broker, as a
    /// long GC pause or a frozen VM would leave it.
    fn signal(&self, signal: &str) {
        let b = self.broker.as_ref().expect("the broker runs");
        fluxo::engines::signal_group(b.pid(), signal);
    }
}

/// What happens to the broker mid-stream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum BrokerFault {
    /// SIGKILL, then a restart (same port, same data) after 10 s.
    Kill,
    /// SIGSTOP for 15 s (longer than the group's 10 s session timeout), then SIGCONT.
    Pause,
}

fn own_broker() -> MutexGuard<'static, OwnBroker> {
    static BROKER: OnceLock<Mutex<OwnBroker>> = OnceLock::new();
    BROKER
        .get_or_init(|| {
            let dir = fluxo::engines::scratch_dir("fluxo-faults-kafka").unwrap();
            let address = format!("127.0.0.1:{}", free_port());
            let broker = Broker::start(&address, &dir).expect("starting Apache Kafka");
            // Removes the data once this binary exits (each start has a watchdog of its own
            // that stops that broker).
            fluxo::engines::stop_with_process(broker.pid(), std::process::id(), Some(&dir))
                .unwrap();
            use_broker(&address);
            Mutex::new(OwnBroker {
                address,
                dir,
                broker: Some(broker),
            })
        })
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

/// The broker SIGKILLed mid-stream and restarted 10 s later, or paused past the session
/// timeout: the runtime neither exits nor wedges, `/readyz` says 503 while the broker is gone
/// and 200 once it is back, the query API answers reads from the store throughout, and both
/// processors finish the stream with nothing lost or applied twice.
// The broker's guard is held for the whole scenario on purpose: the tests that kill or pause
// this binary's one broker must not overlap.
#[allow(clippy::await_holding_lock)]
async fn broker_fault_mid_stream(fault: BrokerFault, guarantee: &str) {
    let _serial = serial();
    let mut broker = own_broker();
    const N: usize = 24_000;
    const SYMBOLS: usize = 24;
    let env = mixed_env(LEDGER, PRICES, guarantee);
    let mut child = KillOnDrop(env.start());
    let token = token(&env);
    let mut stream = Stream::start(&env, 11, N, SYMBOLS, 1_000).await;

    // A row the API must keep serving during the outage: the first valid entry's day.
    let probe = expected(&stream.entries[..200])
        .into_keys()
        .next()
        .expect("a valid entry");
    let path = balance_path(&probe);
    wait_until(
        &env,
        "the probe balance served",
        Duration::from_secs(120),
        || api_get(&env, &token, &path).0 == 200,
    );
    // Mid-stream: a quarter consumed, most of it still to come.
    env.wait_for_records_in(LEDGER, N as u64 / 4, Duration::from_secs(180));

    let down_for = match fault {
        BrokerFault::Kill => {
            broker.kill();
            Duration::from_secs(10)
        }
        BrokerFault::Pause => {
            broker.signal("STOP");
            Duration::from_secs(15)
        }
    };
    let killed = Instant::now();
    eprintln!(
        "broker fault {fault:?} after {} ledger records in",
        env.metric(
            "fluxo_records_in_total",
            &[&format!("processor=\"{LEDGER}\"")]
        )
    );
    // Down for `down_for` at least, and until /readyz said so (a loaded machine may be slow to
    // see it).
    let mut not_ready_seen = false;
    let mut reads = 0;
    while killed.elapsed() < down_for || !not_ready_seen {
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "/readyz still answers {} 60 s after the broker was killed; log:\n{}",
            readyz(&env),
            env.log()
        );
        not_ready_seen |= readyz(&env) == 503;
        let (code, body, took) = api_get(&env, &token, &path);
        assert_eq!(code, 200, "read during the outage: {body}");
        assert!(took < Duration::from_secs(5), "a read took {took:?}");
        reads += 1;
        assert_running(&mut child, &env, "while the broker was down");
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "/readyz 503 seen; {reads} API reads answered 200 while the broker was down; back after {:.1} s",
        killed.elapsed().as_secs_f64()
    );
    match fault {
        BrokerFault::Kill => broker.restart(),
        BrokerFault::Pause => broker.signal("CONT"),
    }
    eprintln!(
        "broker back {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    wait_until(
        &env,
        "/readyz 200 after the restart",
        Duration::from_secs(120),
        || readyz(&env) == 200,
    );

    stream.finish();
    wait_checkpointed(&env, &mut child, LEDGER, N as u64, Duration::from_secs(300));
    wait_checkpointed(
        &env,
        &mut child,
        PRICES,
        3 * SYMBOLS as u64,
        Duration::from_secs(120),
    );
    assert_running(&mut child, &env, "after the broker came back");
    let (code, body, _) = api_get(&env, &token, &path);
    assert_eq!(code, 200, "{body}");
    eprintln!(
        "{fault:?}/{guarantee}: finished; engines restarted in-process {} times",
        env.metric("fluxo_engine_restarts_total", &[]) as u64
    );
    assert!(stop(&mut child).success(), "log:\n{}", env.log());
    drop(broker);
    check_invariants(&env, &stream, guarantee == "exactly_once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_stream_exactly_once() {
    broker_fault_mid_stream(BrokerFault::Kill, "exactly_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_stream_effectively_once() {
    broker_fault_mid_stream(BrokerFault::Kill, "effectively_once").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_paused_past_the_session_timeout_exactly_once() {
    broker_fault_mid_stream(BrokerFault::Pause, "exactly_once").await;
}

/// The Cassandra node paused (SIGSTOP), as a long GC pause or a frozen VM would leave it: its
/// connections stay open, so the driver waits and retries for tens of seconds. The query API
/// answers 503 with a JSON error at its read timeout (the default, 5 s) instead of holding the
/// request, and reads work again once the node is resumed (SIGCONT). The reads abandoned at the
/// timeout keep running until the driver gives up, so a burst of requests meanwhile must not
/// pile up threads: at most `[http] max_reads_in_flight` (4 here) run, the rest are answered 503
/// at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_paused_reads_answer_503_at_the_read_timeout() {
    let _serial = serial();
    drop(own_broker());
    let node_dir = fluxo::engines::scratch_dir("fluxo-faults-cassandra-paused").unwrap();
    let node =
        fluxo::engines::cassandra::Node::start(free_port(), &node_dir).expect("starting Cassandra");
    fluxo::engines::stop_with_process(node.pid(), std::process::id(), Some(&node_dir)).unwrap();
    let env = Env::new(&[LEDGER], "");
    env.use_scylla_at(&node.address);
    env.edit_topology(
        "max_reads_in_flight = 128",
        &format!("max_reads_in_flight = {READ_PLACES}"),
    );
    env.create_topics();
    let mut child = KillOnDrop(env.start());
    let token = token(&env);
    // An account nobody wrote: the store answers "none" (404) when it answers at all.
    let path = "/v1/accounts/ACC-PAUSED/daily-balances/2024-05-01";
    let (code, body, _) = api_get(&env, &token, path);
    assert_eq!(code, 404, "before the pause: {body}");

    fluxo::engines::signal_group(node.pid(), "STOP");
    for _ in 0..3 {
        let (code, body, took) = api_get(&env, &token, path);
        assert_eq!(
            code, 503,
            "a read while the node is paused: {body} after {took:?}"
        );
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("did not answer within 5000 ms")),
            "{body}"
        );
        assert!(
            took >= Duration::from_millis(4_500) && took < Duration::from_secs(8),
            "answered after {took:?}"
        );
        assert_running(&mut child, &env, "while the node was paused");
    }
    let burst = paused_read_burst(&env, &token, path, child.id());
    assert_running(&mut child, &env, "after the burst of reads");
    fluxo::engines::signal_group(node.pid(), "CONT");
    let resumed = Instant::now();
    wait_until(
        &env,
        "reads answered again after SIGCONT",
        Duration::from_secs(60),
        || api_get(&env, &token, path).0 == 404,
    );
    wait_until(
        &env,
        "every read place free after SIGCONT",
        Duration::from_secs(60),
        || env.metric("fluxo_http_reads_in_flight", &[]) == 0.0,
    );
    eprintln!(
        "paused node: 3 reads answered 503 at the 5 s read timeout; {burst}; reads back {:.1} s \
         after SIGCONT",
        resumed.elapsed().as_secs_f64()
    );
    assert!(stop(&mut child).success(), "log:\n{}", env.log());
}

/// `[http] max_reads_in_flight` of the paused-node test.
const READ_PLACES: usize = 4;

/// 32 concurrent reads while the store is paused and the earlier reads still hold their places:
/// none waits past the read timeout, at most [`READ_PLACES`] run (the rest refused at once with
/// `Retry-After`), and `fluxo run` gains no more threads than that (plus a little slack for the
/// runtime's own). Returns a line for the test's output.
fn paused_read_burst(env: &Env, token: &str, path: &str, pid: u32) -> String {
    const BURST: usize = 32;
    let threads_before = process_threads(pid);
    let answers: Vec<_> = std::thread::scope(|s| {
        let reads: Vec<_> = (0..BURST)
            .map(|_| s.spawn(|| api_get(env, token, path)))
            .collect();
        reads.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let in_flight = env.metric("fluxo_http_reads_in_flight", &[]);
    let threads_after = process_threads(pid);
    let (mut timed_out, mut refused) = (0, 0);
    for (code, body, took) in &answers {
        assert_eq!(*code, 503, "a read during the burst: {body} after {took:?}");
        let error = body["error"].as_str().unwrap_or_default();
        if error.contains("did not answer within 5000 ms") {
            timed_out += 1;
        } else {
            assert_eq!(
                error,
                format!("too many state store reads in flight (limit {READ_PLACES}); retry later"),
                "{body}"
            );
            assert!(*took < Duration::from_secs(2), "refused after {took:?}");
            refused += 1;
        }
    }
    assert!(
        timed_out <= READ_PLACES && refused >= BURST - READ_PLACES,
        "{timed_out} timed out, {refused} refused"
    );
    assert!(
        in_flight >= 1.0 && in_flight <= READ_PLACES as f64,
        "fluxo_http_reads_in_flight {in_flight}"
    );
    // Without the bound each request of the burst kept a blocking thread (32 more).
    assert!(
        threads_after <= threads_before + READ_PLACES + 6,
        "threads {threads_before} -> {threads_after}"
    );
    format!(
        "a burst of {BURST}: {timed_out} timed out, {refused} refused at once, {in_flight} reads \
         in flight, threads {threads_before} -> {threads_after}"
    )
}

/// `Threads:` of `/proc/<pid>/status`.
fn process_threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: in /proc/<pid>/status")
}

/// The Cassandra node SIGKILLed mid-stream and restarted: checkpoints stop (no state without
/// its offsets), the query API answers 503 with a JSON error promptly, and once the node is back
/// the stream finishes exact. Then an outage longer than `store_patience` stops `fluxo run` with
/// exit 1 and an error naming the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_killed_mid_stream_then_an_outage_past_the_patience() {
    let _serial = serial();
    drop(own_broker());
    const N: usize = 12_000;
    let node_dir = fluxo::engines::scratch_dir("fluxo-faults-cassandra").unwrap();
    let port = free_port();
    let mut node =
        fluxo::engines::cassandra::Node::start(port, &node_dir).expect("starting Cassandra");
    fluxo::engines::stop_with_process(node.pid(), std::process::id(), Some(&node_dir)).unwrap();
    let env = Env::new(&[LEDGER], "");
    env.use_scylla_at(&node.address);
    // Long enough for a restart of the node on a loaded machine.
    env.edit_topology("store_patience = \"120s\"", "store_patience = \"600s\"");
    env.create_topics();
    let mut child = KillOnDrop(env.start());
    let token = token(&env);
    let mut stream = Stream::start(&env, 12, N, 0, 1_000).await;
    let probe = expected(&stream.entries[..200])
        .into_keys()
        .next()
        .expect("a valid entry");
    let path = balance_path(&probe);
    wait_until(
        &env,
        "the probe balance served",
        Duration::from_secs(120),
        || api_get(&env, &token, &path).0 == 200,
    );
    env.wait_for_records_in(LEDGER, N as u64 / 4, Duration::from_secs(180));

    node.kill();
    let killed = Instant::now();
    let checkpointed = || {
        env.metric(
            "fluxo_checkpointed_offset",
            &[&format!("processor=\"{LEDGER}\"")],
        ) as u64
    };
    // A commit in flight when the node died may still land; nothing after.
    std::thread::sleep(Duration::from_secs(2));
    let frozen = checkpointed();
    let mut answers = 0;
    while killed.elapsed() < Duration::from_secs(15) {
        let (code, body, took) = api_get(&env, &token, &path);
        assert_eq!(code, 503, "a read while the store is down: {body}");
        assert!(
            body["error"]
                .as_str()
                .is_some_and(|e| e.contains("state store")),
            "{body}"
        );
        assert!(took < Duration::from_secs(30), "a read took {took:?}");
        answers += 1;
        assert_eq!(
            checkpointed(),
            frozen,
            "a checkpoint committed while the store was down"
        );
        assert_running(&mut child, &env, "while the store was down");
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{answers} API reads answered 503 while the node was down; checkpoints stayed at {frozen} of {N}");
    drop(node);
    let mut node =
        fluxo::engines::cassandra::Node::start(port, &node_dir).expect("restarting Cassandra");
    eprintln!(
        "node back {:.1} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    stream.finish();
    wait_checkpointed(&env, &mut child, LEDGER, N as u64, Duration::from_secs(300));
    wait_until(
        &env,
        "the API serving again",
        Duration::from_secs(60),
        || api_get(&env, &token, &path).0 == 200,
    );
    assert!(stop(&mut child).success(), "log:\n{}", env.log());
    check_invariants(&env, &stream, true);

    // An outage past the patience: a clear fail-stop.
    env.edit_topology("store_patience = \"600s\"", "store_patience = \"5s\"");
    let mut child = KillOnDrop(env.start());
    node.kill();
    let more = Stream::start(&env, 13, 300, 0, 1_000).await;
    let error = expect_fail_stop(
        &env,
        &mut child,
        "an outage past its 5 s patience",
        Duration::from_secs(120),
    );
    assert!(error.contains("scylla"), "{error}");
    eprintln!("outage past the patience: exit 1, `{error}`");
    let mut more = more;
    more.finish();
}

/// A tmpfs mounted over a directory (root only, as the test machines run), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs needs root: {status}");
        Self(dir.to_path_buf())
    }

    /// Give the file system `size` in all (its files stay).
    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("running mount");
        assert!(status.success(), "resizing the tmpfs: {status}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The embedded store's file on a full disk (a 1 MiB tmpfs over the data directory): `fluxo run`
/// stops with exit 1 and an error naming the store once its patience is spent, without a
/// checkpoint half-written; once the disk has room again a restart finishes the stream with
/// every balance exact (nothing lost, nothing applied twice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_on_a_full_disk_fails_stop_then_recovers() {
    let _serial = serial();
    drop(own_broker());
    const N: usize = 30_000;
    let env = Env::new(&[LEDGER], "");
    env.edit_topology("store_patience = \"120s\"", "store_patience = \"5s\"");
    let disk = Tmpfs::mount(&env.data_dir(), "1m");
    env.create_topics();
    let mut child = KillOnDrop(env.start());
    let mut stream = Stream::start(&env, 14, N, 0, 20_000).await;
    stream.finish();
    let error = expect_fail_stop(
        &env,
        &mut child,
        "a full disk under its store",
        Duration::from_secs(180),
    );
    eprintln!("disk full: exit 1, `{error}`");
    assert!(
        error.contains("store") || error.contains("space"),
        "the error names neither the store nor the disk: {error}"
    );

    disk.resize("256m");
    let mut child = KillOnDrop(env.start());
    wait_checkpointed(&env, &mut child, LEDGER, N as u64, Duration::from_secs(300));
    assert!(stop(&mut child).success(), "log:\n{}", env.log());
    check_invariants(&env, &stream, true);
    drop(disk);
}
