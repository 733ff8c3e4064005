//! `--sustain SECONDS`: one load level held for minutes against a log that keeps
//! growing, reported per window, because users see the tail of a long run, not the
//! average of a fresh one.
//!
//! Each window (`--window`, 20 s) reports tokens/s, p50, p99 and max latency, and then
//! the server's WAL size, host and enclave RSS and log size. When Debian's `wrk` is on
//! the PATH, windows alternate between this program's client and `wrk` (same
//! connections, same request), so an outside load generator checks every figure on the
//! same growing log; without it, every window is ours and the output says so.
//! The table is printed and the figures are written as JSON (`--out`).

use super::{log_size, run_level, Api, Level, Target};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The server's own figures, read between windows (only for a `sealgate sim` we started).
pub struct Server {
    pub host_pid: u32,
    pub wal: PathBuf,
}

/// Resident set size of `pid` in bytes (`VmRSS`).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The enclave: the host's child process, whichever of its threads spawned it.
fn child_of(pid: u32) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .find_map(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
}

/// One window's figures.
struct Window {
    index: usize,
    generator: &'static str,
    started_s: f64,
    tokens_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    errors: u64,
    wal_bytes: Option<u64>,
    host_rss: Option<u64>,
    enclave_rss: Option<u64>,
    log_size: Option<u64>,
}

impl Window {
    fn json(&self) -> Value {
        json!({
            "window": self.index,
            "generator": self.generator,
            "started_s": self.started_s,
            "tokens_per_s": self.tokens_per_s,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "errors": self.errors,
            "wal_bytes": self.wal_bytes,
            "host_rss_bytes": self.host_rss,
            "enclave_rss_bytes": self.enclave_rss,
            "log_size": self.log_size,
        })
    }
}

/// `wrk`'s latency figure ("812.00us", "3.06ms", "1.20s", "2.00m") in milliseconds.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

/// What `wrk --latency` printed.
#[derive(Debug, PartialEq)]
struct WrkFigures {
    /// Successful (2xx/3xx) responses per second.
    ok_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    max_ms: Option<f64>,
    /// Non-2xx/3xx responses and socket errors.
    errors: u64,
}

fn parse_wrk(out: &str, seconds: f64) -> Result<WrkFigures, String> {
    let field = |line: &str, i: usize| line.split_whitespace().nth(i).map(str::to_string);
    let mut p50 = None;
    let mut p99 = None;
    let mut max = None;
    let mut requests = None;
    let mut errors = 0u64;
    for line in out.lines() {
        let t = line.trim();
        if t.starts_with("Latency ") && max.is_none() {
            max = field(t, 3).and_then(|v| wrk_ms(&v));
        } else if t.starts_with("50% ") {
            p50 = field(t, 1).and_then(|v| wrk_ms(&v));
        } else if t.starts_with("99% ") {
            p99 = field(t, 1).and_then(|v| wrk_ms(&v));
        } else if t.contains(" requests in ") {
            requests = field(t, 0).and_then(|v| v.parse::<u64>().ok());
        } else if let Some(n) = t.strip_prefix("Non-2xx or 3xx responses:") {
            errors += n.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    let requests = requests.ok_or_else(|| format!("cannot read wrk's output:\n{out}"))?;
    let ok = requests.saturating_sub(errors);
    Ok(WrkFigures {
        ok_per_s: ok as f64 / seconds,
        p50_ms: p50,
        p99_ms: p99,
        max_ms: max,
        errors,
    })
}

/// `wrk` on the PATH, or why not.
fn find_wrk() -> Result<(), String> {
    match Command::new("wrk").arg("--version").output() {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "wrk not found ({e}); `make bench-sustained` installs Debian's wrk"
        )),
    }
}

/// One window driven by `wrk`.
fn wrk_window(url: &str, key: &str, connections: usize, seconds: u64, dir: &Path) -> Result<Level, String> {
    let script = dir.join("mint.lua");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.body = \"{{}}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer {key}\"\n"
    );
    std::fs::write(&script, lua).map_err(|e| format!("{}: {e}", script.display()))?;
    let threads = connections.clamp(1, 2);
    let out = Command::new("wrk")
        .args([
            &format!("-t{threads}"),
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(format!("{url}/v1/tokens"))
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let f = parse_wrk(&text, seconds as f64)?;
    let mut tally = super::Tally::default();
    if f.errors > 0 {
        tally
            .errors
            .insert("wrk".into(), (f.errors, "non-2xx responses or socket errors".into()));
    }
    Ok(Level {
        connections,
        tokens_per_s: f.ok_per_s,
        p50_ms: f.p50_ms,
        p99_ms: f.p99_ms,
        max_ms: f.max_ms,
        tally,
    })
}

fn mb(v: Option<u64>) -> String {
    v.map_or("-".into(), |b| format!("{:.1}", b as f64 / (1 << 20) as f64))
}

/// Runs the sustained level and prints and writes its figures.
#[allow(clippy::too_many_arguments)]
pub fn run(
    rt: &tokio::runtime::Runtime,
    url: &str,
    key: &str,
    server: Option<Server>,
    connections: usize,
    seconds: u64,
    window: u64,
    out: &Path,
) -> Result<(), String> {
    let api = Api::new(url);
    let target = Arc::new(Target::new(url, key)?);
    let wrk = find_wrk();
    let scratch = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    match &wrk {
        Ok(()) => println!("windows alternate between this client (bench) and wrk, both at {connections} connections"),
        Err(why) => println!("every window is this client's: {why}"),
    }
    let windows_n = seconds.div_ceil(window).max(1) as usize;
    println!(
        "{:>3} {:>5} {:>7} {:>10} {:>8} {:>8} {:>8} {:>6} {:>8} {:>9} {:>8} {:>10}",
        "win",
        "gen",
        "at s",
        "tokens/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "WAL MB",
        "host MB",
        "encl MB",
        "log size"
    );
    let start = Instant::now();
    let mut windows = Vec::new();
    for index in 1..=windows_n {
        let started_s = start.elapsed().as_secs_f64();
        let by_wrk = wrk.is_ok() && index % 2 == 0;
        let level = if by_wrk {
            wrk_window(url, key, connections, window, scratch.path())?
        } else {
            rt.block_on(run_level(target.clone(), connections, window, Duration::ZERO))
        };
        let enclave = server.as_ref().and_then(|s| child_of(s.host_pid));
        let w = Window {
            index,
            generator: if by_wrk { "wrk" } else { "bench" },
            started_s,
            tokens_per_s: level.tokens_per_s,
            p50_ms: level.p50_ms,
            p99_ms: level.p99_ms,
            max_ms: level.max_ms,
            errors: level.errors(),
            wal_bytes: server
                .as_ref()
                .map(|s| std::fs::metadata(&s.wal).map_or(0, |m| m.len())),
            host_rss: server.as_ref().and_then(|s| rss(s.host_pid)),
            enclave_rss: enclave.and_then(rss),
            log_size: log_size(&api).ok(),
        };
        println!(
            "{:>3} {:>5} {:>7.0} {:>10.1} {:>8} {:>8} {:>8} {:>6} {:>8} {:>9} {:>8} {:>10}",
            w.index,
            w.generator,
            w.started_s,
            w.tokens_per_s,
            super::ms(w.p50_ms),
            super::ms(w.p99_ms),
            super::ms(w.max_ms),
            w.errors,
            mb(w.wal_bytes),
            mb(w.host_rss),
            mb(w.enclave_rss),
            w.log_size.map_or("-".into(), |n| n.to_string())
        );
        windows.push(w);
    }
    let summary = summarize(&windows);
    let doc = json!({
        "connections": connections,
        "seconds": seconds,
        "window_seconds": window,
        "url": url,
        "external_generator": wrk.as_ref().map(|_| "wrk").map_err(|e| e.clone()),
        "windows": windows.iter().map(Window::json).collect::<Vec<_>>(),
        "summary": summary,
    });
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("figures written to {}", out.display());
    Ok(())
}

/// Per generator: the slowest and fastest window, the worst p99 and max; and the
/// server's largest WAL and its RSS growth.
fn summarize(windows: &[Window]) -> Value {
    let mut per = serde_json::Map::new();
    for generator in ["bench", "wrk"] {
        let ws: Vec<&Window> = windows.iter().filter(|w| w.generator == generator).collect();
        if ws.is_empty() {
            continue;
        }
        let slowest = ws.iter().map(|w| w.tokens_per_s).fold(f64::INFINITY, f64::min);
        let fastest = ws.iter().map(|w| w.tokens_per_s).fold(0.0, f64::max);
        let worst = |f: fn(&Window) -> Option<f64>| ws.iter().filter_map(|w| f(w)).fold(0.0, f64::max);
        let (p99, max) = (worst(|w| w.p99_ms), worst(|w| w.max_ms));
        let ratio = if fastest > 0.0 { slowest / fastest } else { 0.0 };
        println!(
            "{generator}: slowest window {slowest:.1} tokens/s, fastest {fastest:.1} (slowest/fastest {ratio:.3}); \
             worst window p99 {p99:.3} ms, worst max {max:.3} ms"
        );
        per.insert(
            generator.into(),
            json!({ "slowest_tokens_per_s": slowest, "fastest_tokens_per_s": fastest, "slowest_over_fastest": ratio,
                    "worst_p99_ms": p99, "worst_max_ms": max }),
        );
    }
    let largest_wal = windows.iter().filter_map(|w| w.wal_bytes).max();
    let first_last = |f: fn(&Window) -> Option<u64>| {
        let v: Vec<u64> = windows.iter().filter_map(f).collect();
        v.first().zip(v.last()).map(|(a, b)| (*a, *b))
    };
    let host = first_last(|w| w.host_rss);
    let enclave = first_last(|w| w.enclave_rss);
    if let Some(wal) = largest_wal {
        println!("largest WAL after a window: {} MB", mb(Some(wal)));
    }
    if let Some((a, b)) = host {
        println!(
            "host RSS: {} MB after the first window, {} MB after the last ({:+.1} MB)",
            mb(Some(a)),
            mb(Some(b)),
            (b as f64 - a as f64) / (1 << 20) as f64
        );
    }
    if let Some((a, b)) = enclave {
        println!(
            "enclave RSS: {} MB after the first window, {} MB after the last",
            mb(Some(a)),
            mb(Some(b))
        );
    }
    json!({
        "per_generator": per,
        "largest_wal_bytes": largest_wal,
        "host_rss_first_last": host,
        "enclave_rss_first_last": enclave,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 20s test @ http://127.0.0.1:18091/v1/tokens
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.06ms    1.02ms  90.05ms   85.05%
    Req/Sec     5.21k   312.10     5.80k    71.00%
  Latency Distribution
     50%    2.99ms
     75%    3.40ms
     90%    4.01ms
     99%  812.00us
  207618 requests in 20.00s, 180.18MB read
  Non-2xx or 3xx responses: 18
Requests/sec:  10373.60
Transfer/sec:      9.01MB
";

    #[test]
    fn reads_wrk_output() {
        let f = parse_wrk(WRK, 20.0).unwrap();
        assert_eq!(f.errors, 18);
        assert!((f.ok_per_s - (207_600.0 / 20.0)).abs() < 1e-9, "{}", f.ok_per_s);
        assert_eq!(f.p50_ms, Some(2.99));
        assert_eq!(f.p99_ms, Some(0.812));
        assert_eq!(f.max_ms, Some(90.05));
        assert_eq!(wrk_ms("1.20s"), Some(1200.0));
        assert!(parse_wrk("garbage", 20.0).is_err());
    }
}
