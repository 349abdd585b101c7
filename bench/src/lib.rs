//! What the benchmark binaries (`src/bin/`) share: run a closure for a while or a number
//! of times, and report calls per second with p50/p99 latency; the machine and its load as
//! the figures' heading; a process's resident memory; the open-file limit that thousands
//! of client sockets need; where the benchmarks' Python scripts (`python/`) are.
//! Benchmarks print figures; they never assert on them.
//!
//! Everything that starts or talks to the real binaries and peers (daemons, the CLI,
//! console clients, PKI, the KDC, QEMU) is the end-to-end harness, `vmgate_tests`: the
//! benchmarks use it, and it knows nothing of them.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use vmgate_tests::{command_line, vnc::Capture};

/// Latencies of a run and how long it took.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub latencies: Vec<Duration>,
    pub wall: Duration,
}

impl Sample {
    pub fn merge(samples: Vec<Sample>, wall: Duration) -> Sample {
        let latencies = samples.into_iter().flat_map(|s| s.latencies).collect();
        Sample { latencies, wall }
    }

    pub fn per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    /// The q-th quantile (0..=1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return f64::NAN;
        }
        let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
    }

    /// `calls/s | p50 ms | p99 ms` as table cells.
    pub fn cells(&self) -> String {
        format!(
            "{:.0} | {:.3} | {:.3}",
            self.per_sec(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99)
        )
    }
}

/// Calls `f` repeatedly for `budget` (at least `min_calls` times), timing each call.
pub async fn run_for<F, Fut>(budget: Duration, min_calls: usize, mut f: F) -> Sample
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < budget || latencies.len() < min_calls {
        let t = Instant::now();
        f().await;
        latencies.push(t.elapsed());
    }
    Sample {
        latencies,
        wall: start.elapsed(),
    }
}

/// nproc, CPU model and date, as the figures' heading.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let date = command_line("date", &["-u", "+%Y-%m-%d"]).unwrap_or_default();
    // Benchmarks run from target/<profile>/, which names the build they measure.
    let profile = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "Machine: {cpus} CPUs ({model}), {date}, {profile} build, loopback; {}.\n",
        load_average()
    )
}

/// The 1-minute load average, which says how much else the machine was doing.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "load average {}",
        load.split_whitespace().next().unwrap_or("unknown")
    )
}

/// Runs a new-process console capture `runs` times: the times of the runs that saved a
/// frame, and a note naming how many did not (empty when all did).
pub fn repeat_captures(runs: usize, mut capture: impl FnMut() -> Capture) -> (Sample, String) {
    let mut latencies = Vec::with_capacity(runs);
    let mut failures = 0;
    for _ in 0..runs {
        let cap = capture();
        if cap.ok {
            latencies.push(cap.elapsed);
        } else {
            failures += 1;
        }
    }
    let note = if failures > 0 {
        format!(" ({failures} failed)")
    } else {
        String::new()
    };
    (
        Sample {
            latencies,
            wall: Duration::ZERO,
        },
        note,
    )
}

/// A process's resident memory in KiB, from /proc/PID/status.
#[derive(Clone, Copy, Debug)]
pub struct Rss {
    /// `VmRSS`: everything resident.
    pub vm: u64,
    /// `RssAnon`: the heap and stacks, without mapped files.
    pub anon: u64,
}

pub fn rss(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok(Rss {
        vm: field("VmRSS:")?,
        anon: field("RssAnon:")?,
    })
}

/// How many console sessions `Console.ListSessions` lists for `domain`.
pub async fn listed_sessions(api: &mut vmgate::Connection, domain: &str) -> anyhow::Result<usize> {
    let sessions = api
        .console
        .list_sessions(vmgate_proto::v1::DomainRef { key: domain.into() })
        .await?
        .into_inner()
        .sessions;
    Ok(sessions.len())
}

/// Raises this process's open-file limit to the hard limit: thousands of idle sessions
/// need more than the usual 1,024 descriptors.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// The Python script `name` in this crate's `python/` folder.
pub fn python_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}
