//! Load-test server for the query API: seeds `daily_balances` with ACCOUNTS x DAYS rows into an
//! embedded store, serves the API on 127.0.0.1:PORT and prints a ready line with a valid token,
//! for `wrk -s benches/wrk_daily_balance.lua` (see `benches/README.md`).
//!
//! ```text
//! cargo bench --bench api_load -- --serve [--port 8080] [--accounts 100000] [--days 30]
//!     [--first-day 2024-01-01] [--workers 2] [--store PATH]
//! ```
//! Without `--serve` (a plain `cargo bench`) it only prints this usage, so it never blocks a
//! benchmark run. With `--store PATH` the store is kept and reused when it already holds the
//! last row, so a second run skips seeding; without it a temporary store is seeded and removed
//! at exit (Ctrl-C stops the server).

use fluxo::api::{self, ApiState, Auth, Freshness, ReadGate};
use fluxo::state::embedded::EmbeddedStore;
use fluxo::state::StateStore;
use fluxo_processors::views;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    port: u16,
    accounts: usize,
    days: usize,
    first_day: String,
    workers: usize,
    store: Option<PathBuf>,
    serve: bool,
}

const USAGE: &str = "usage: cargo bench --bench api_load -- --serve [--port 8080] \
[--accounts 100000] [--days 30] [--first-day 2024-01-01] [--workers 2] [--store PATH]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        port: 8080,
        accounts: 100_000,
        days: 30,
        first_day: "2024-01-01".to_string(),
        workers: 2,
        store: None,
        serve: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bench" => continue, // passed by `cargo bench`
            "--serve" => {
                a.serve = true;
                continue;
            }
            _ => {}
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--port" => a.port = value.parse().map_err(|e| format!("--port: {e}"))?,
            "--accounts" => a.accounts = num(&value)?,
            "--days" => a.days = num(&value)?,
            "--first-day" => a.first_day = value,
            "--workers" => a.workers = num(&value)?.max(1),
            "--store" => a.store = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("{e}\n{USAGE}"))?;
    if !args.serve {
        println!("api_load: a load-test server, not run by a plain `cargo bench`.\n{USAGE}");
        return Ok(());
    }
    let first_day = api::params::business_date("--first-day", &args.first_day)?;
    // A temporary directory only without --store; removed when `tmp` drops at exit.
    let tmp = match &args.store {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let path = match (&args.store, &tmp) {
        (Some(p), _) => p.clone(),
        (None, Some(t)) => t.path().join("views.redb"),
        (None, None) => return Err("no store path".into()),
    };
    let store = EmbeddedStore::open(&path)?;
    let last_account = api::seed_account_id(args.accounts.saturating_sub(1));
    let last_day = first_day + i32::try_from(args.days)? - 1;
    let last_key = views::daily_balance_key(&last_account, last_day);
    if store.get(views::DAILY_BALANCES, &last_key)?.is_some() {
        println!("store {} already seeded", path.display());
    } else {
        let started = Instant::now();
        let rows = api::seed_daily_balances(&store, args.accounts, args.days, first_day)?;
        println!(
            "seeded {rows} rows ({} accounts x {} days from {}) into {} in {:.1} s",
            args.accounts,
            args.days,
            args.first_day,
            path.display(),
            started.elapsed().as_secs_f64()
        );
    }

    let auth = Auth::development();
    let token = auth.dev_token(Duration::from_secs(24 * 3600))?;
    let state = ApiState {
        store: Arc::new(store),
        auth: Arc::new(auth),
        freshness: Arc::new(Freshness::now()),
        read_timeout: Duration::from_secs(5),
        reads: ReadGate::new(128),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        let addr = listener.local_addr()?;
        println!(
            "READY http://{addr} accounts={} days={} first_day={} workers={}",
            args.accounts, args.days, args.first_day, args.workers
        );
        println!("FLUXO_TOKEN={token}");
        println!(
            "then: export FLUXO_TOKEN=<the token above> FLUXO_ACCOUNTS={} FLUXO_DAYS={} \
             FLUXO_FIRST_DAY={}; wrk -t2 -c64 -d20s --latency \
             -s benches/wrk_daily_balance.lua http://{addr}",
            args.accounts, args.days, args.first_day
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(shutdown)
            .await
    })?;
    drop(tmp);
    Ok(())
}
