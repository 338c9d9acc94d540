//! Progress of a replay on stderr: a bar on a terminal (records done of total, rate, ETA),
//! plain lines every few seconds otherwise (logs, CI).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a plain progress line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// Reports records done of a known total.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Start reporting progress towards `total` records.
    pub fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} records  {per_sec}  eta {eta}  {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            total,
            started: now,
            last_line: now,
        }
    }

    /// `done` records are processed and checkpointed.
    pub fn update(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        if self.last_line.elapsed() >= LINE_EVERY {
            self.last_line = Instant::now();
            eprintln!("{}", self.line(done));
        }
    }

    /// The plain progress line for `done` records.
    pub fn line(&self, done: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let pct = if self.total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / self.total as f64
        };
        let eta = if rate > 0.0 {
            format!("{:.0}s", self.total.saturating_sub(done) as f64 / rate)
        } else {
            "-".into()
        };
        format!(
            "replay: {done}/{} records ({pct:.1}%), {rate:.0} records/s, eta {eta}",
            self.total
        )
    }

    /// Stop drawing.
    pub fn finish(&mut self, done: u64) {
        if let Some(bar) = self.bar.take() {
            bar.set_position(done);
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_shows_done_of_total_rate_and_eta() {
        let mut p = Progress::new(200);
        p.bar = None;
        // A rate of 1/s, so a scheduling stall of a few hundred ms changes nothing shown.
        p.started = Instant::now() - Duration::from_secs(100);
        assert_eq!(
            p.line(100),
            "replay: 100/200 records (50.0%), 1 records/s, eta 100s"
        );
        let empty = Progress::new(0);
        assert!(empty.line(0).contains("0/0 records (100.0%)"));
    }
}
