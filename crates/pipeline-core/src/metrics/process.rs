//! The `process_*` series (CPU time, memory, file descriptors, threads, start time), read
//! from `/proc/self` when `/metrics` is scraped, so they are as fresh as the scrape.
//!
//! They are rendered here as text rather than through the `metrics` recorder: CPU time is a
//! fractional counter, which the recorder's integer counters cannot hold, and a value read
//! at scrape time has nothing to keep between scrapes. The names and meanings are those of
//! the Prometheus client libraries' process collectors, so stock dashboards work. On a
//! system without `/proc` nothing is rendered.

use std::fmt::Write as _;

use super::catalogue::{PROCESS, ProcessMetric};

/// Clock ticks per second of the times in `/proc/<pid>/stat`. The kernel reports them in
/// `USER_HZ`, which is part of its user-space ABI and 100 on every architecture Linux runs
/// on today (`getconf CLK_TCK`); the Prometheus project's own procfs reader assumes the
/// same. Reading it from `sysconf` would need `unsafe` or a new dependency for a constant.
const USER_HZ: f64 = 100.0;

/// One reading of the process.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Reading {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<f64>,
    pub virtual_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub threads: Option<f64>,
}

impl Reading {
    /// Reads `/proc/self`; a file that cannot be read or parsed leaves its values out.
    pub(super) fn now() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let mut r = Self::default();
        if let Some(stat) = read("/proc/self/stat") {
            let btime = read("/proc/stat").and_then(|s| boot_time(&s));
            r.apply_stat(&stat, btime);
        }
        if let Some(status) = read("/proc/self/status") {
            r.resident_bytes = status_kib(&status, "VmRSS:").map(|k| k * 1024.0);
        }
        r.max_fds = read("/proc/self/limits").and_then(|l| max_open_files(&l));
        r.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as f64);
        r
    }

    /// Takes the CPU times, thread count, virtual size and start time from the text of
    /// `/proc/self/stat` (`man 5 proc`); `btime` is the boot time in Unix seconds.
    fn apply_stat(&mut self, stat: &str, btime: Option<f64>) {
        // The command name (field 2) is in parentheses and may hold spaces or parentheses
        // itself; the fields after the last `)` start at field 3.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        self.cpu_seconds = field(14)
            .zip(field(15))
            .map(|(utime, stime)| (utime + stime) / USER_HZ);
        self.threads = field(20);
        self.start_time_seconds = field(22)
            .zip(btime)
            .map(|(ticks, boot)| boot + ticks / USER_HZ);
        self.virtual_bytes = field(23);
    }

    /// The reading as Prometheus text, with `# HELP` and `# TYPE` for each series present.
    pub(super) fn render_into(&self, out: &mut String) {
        let values = [
            ("process_cpu_seconds_total", self.cpu_seconds),
            ("process_resident_memory_bytes", self.resident_bytes),
            ("process_virtual_memory_bytes", self.virtual_bytes),
            ("process_open_fds", self.open_fds),
            ("process_max_fds", self.max_fds),
            ("process_start_time_seconds", self.start_time_seconds),
            ("process_threads", self.threads),
        ];
        for (name, value) in values {
            let (Some(value), Some(metric)) = (value, describe(name)) else {
                continue;
            };
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {}", metric.help);
            let _ = writeln!(out, "# TYPE {name} {}", metric.kind);
            let _ = writeln!(out, "{name} {value}\n");
        }
    }
}

fn describe(name: &str) -> Option<&'static ProcessMetric> {
    PROCESS.iter().find(|m| m.name == name)
}

/// `btime` of `/proc/stat`: when the system booted, in Unix seconds.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `kB` line of `/proc/self/status` (`VmRSS:   2188 kB`).
fn status_kib(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`; `None` when unlimited.
fn max_open_files(limits: &str) -> Option<f64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `stat` line whose command name holds a space and a `)`, as a thread renamed by
    /// its program may.
    const STAT: &str = "4242 (tokio) rt) S 1 4242 4242 0 -1 4194560 2563 0 0 0 \
        250 75 0 0 20 0 9 0 123456 734003200 5120 18446744073709551615 1 1 0 0 0 0 0 \
        4096 17642 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let mut r = Reading::default();
        r.apply_stat(STAT, Some(1_700_000_000.0));
        assert_eq!(r.cpu_seconds, Some(3.25), "(250 + 75) ticks at 100 Hz");
        assert_eq!(r.threads, Some(9.0));
        assert_eq!(r.start_time_seconds, Some(1_700_000_000.0 + 1234.56));
        assert_eq!(r.virtual_bytes, Some(734_003_200.0));
    }

    #[test]
    fn status_limits_and_boot_time_are_parsed() {
        let status = "Name:\tx\nVmSize:\t    3892 kB\nVmRSS:\t    2188 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(2188.0));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
            Max open files            20000                40000                files\n";
        assert_eq!(max_open_files(limits), Some(20000.0));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1796544138\n"),
            Some(1_796_544_138.0)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read_from_proc() {
        let r = Reading::now();
        assert!(r.cpu_seconds.is_some_and(|s| s >= 0.0), "{r:?}");
        assert!(
            r.resident_bytes.is_some_and(|b| b > 1024.0 * 1024.0),
            "{r:?}"
        );
        assert!(r.open_fds.is_some_and(|n| n >= 3.0), "{r:?}");
        assert!(r.threads.is_some_and(|n| n >= 1.0), "{r:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        // This test process started moments ago: a wrong tick rate would put its start
        // anywhere between boot and the future.
        let started = r.start_time_seconds.expect("a start time");
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
        let mut text = String::new();
        r.render_into(&mut text);
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
            assert!(text.contains(&format!("# HELP {name} ")), "{text}");
        }
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
        assert!(text.contains("# TYPE process_open_fds gauge"), "{text}");
    }
}
