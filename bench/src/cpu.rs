//! CPU accounting: a thread's CPU time, the machine's per-CPU time split,
//! the facts about the machine the reports name; and the clock and the
//! pinning the measurements use.

use std::time::{SystemTime, UNIX_EPOCH};

/// The calling thread's kernel id.
pub fn gettid() -> i32 {
    // SAFETY: gettid cannot fail.
    unsafe { libc::gettid() }
}

/// Pin the calling thread to `cpu` (a warning if it cannot be: the
/// measurement goes on, its report says which CPUs were meant).
pub fn pin(cpu: usize) {
    if let Err(e) = rstwall_afxdp::sys::pin_current_thread(cpu) {
        eprintln!("cannot pin thread to CPU {cpu}: {e}");
    }
}

/// Clock `clock` in ns; None if the kernel has no such clock.
fn clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writes.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// CLOCK_MONOTONIC in ns: what latency stamps are read from, on the
/// sending and on the receiving side.
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC).unwrap_or(0)
}

/// CPU time (user + system, ns) of thread `tid` of this process, from its
/// per-thread CPU clock (the scheduler's runtime: exact, not tick-sampled).
pub fn thread_cpu_ns(tid: i32) -> Option<u64> {
    // The kernel's encoding of a thread's CPU clock (CPUCLOCK_SCHED,
    // per-thread): what pthread_getcpuclockid gives for a thread.
    clock_ns(((!tid) << 3) | 6)
}

/// System time's share of thread `tid`'s CPU time so far, from the tick
/// counts in its /proc stat (user and system, fields 14 and 15).
pub fn thread_user_sys_ticks(tid: i32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

/// CPU time of process (or kernel thread) `pid`, in clock ticks.
pub fn pid_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Nanoseconds per clock tick.
pub fn tick_ns() -> u64 {
    // SAFETY: sysconf has no preconditions.
    1_000_000_000 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

/// Processes and kernel threads whose name starts with `prefix` (names are
/// cut at 15 bytes: so is the prefix).
pub fn find_pids(prefix: &str) -> Vec<i32> {
    let prefix = &prefix[..prefix.len().min(15)];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.starts_with(prefix).then_some(pid)
        })
        .collect()
}

/// The id of this process's thread named `name` (the datapath names its
/// workers `rstwall-q<queue>`).
pub fn find_thread(name: &str) -> Option<i32> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == name {
            return dir.file_name()?.to_str()?.parse().ok();
        }
    }
    None
}

/// One CPU's line of /proc/stat, in ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub system: u64,
    /// irq + softirq.
    pub irq: u64,
    pub idle: u64,
    /// Time the hypervisor ran something else on this vCPU.
    pub steal: u64,
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.user + self.system + self.irq + self.idle + self.steal
    }
}

/// Per-CPU times, indexed by CPU number.
pub fn cpu_times() -> Vec<CpuTimes> {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        // "cpuN ..." lines; not the "cpu  ..." total.
        let Some(rest) = line
            .strip_prefix("cpu")
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let Some(Ok(cpu)) = it.next().map(str::parse::<usize>) else {
            continue;
        };
        let v: Vec<u64> = it.map(|x| x.parse().unwrap_or(0)).collect();
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        if out.len() <= cpu {
            out.resize(cpu + 1, CpuTimes::default());
        }
        // user nice system idle iowait irq softirq steal
        out[cpu] = CpuTimes {
            user: at(0) + at(1),
            system: at(2),
            irq: at(5) + at(6),
            idle: at(3) + at(4),
            steal: at(7),
        };
    }
    out
}

/// How one CPU spent a window, in percent of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuShare {
    pub user: f64,
    pub system: f64,
    pub irq: f64,
    pub steal: f64,
}

impl CpuShare {
    pub fn busy(&self) -> f64 {
        self.user + self.system + self.irq
    }
}

pub fn cpu_shares(before: &[CpuTimes], after: &[CpuTimes]) -> Vec<CpuShare> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            let total = a.total().saturating_sub(b.total()).max(1) as f64;
            let pct = |x: u64, y: u64| x.saturating_sub(y) as f64 * 100.0 / total;
            CpuShare {
                user: pct(a.user, b.user),
                system: pct(a.system, b.system),
                irq: pct(a.irq, b.irq),
                steal: pct(a.steal, b.steal),
            }
        })
        .collect()
}

/// CPU used by other processes over a window: everything busy, less this
/// process and ksoftirqd (which runs the bench's deferred softirq work).
pub struct OtherLoad {
    at: std::time::Instant,
    cpus: Vec<CpuTimes>,
    proc_ns: u64,
    softirqd_ticks: u64,
}

impl OtherLoad {
    pub fn start(softirqd: &[i32]) -> OtherLoad {
        OtherLoad {
            at: std::time::Instant::now(),
            cpus: cpu_times(),
            proc_ns: process_cpu_ns(),
            softirqd_ticks: softirqd.iter().filter_map(|&p| pid_ticks(p)).sum(),
        }
    }

    /// Per cent of one CPU, since [`OtherLoad::start`].
    pub fn pct(&self, softirqd: &[i32]) -> f64 {
        let ns = self.at.elapsed().as_nanos().max(1) as f64;
        let busy: f64 = cpu_shares(&self.cpus, &cpu_times())
            .iter()
            .map(CpuShare::busy)
            .sum();
        let ticks: u64 = softirqd.iter().filter_map(|&p| pid_ticks(p)).sum();
        let ours = (process_cpu_ns() - self.proc_ns) as f64
            + ticks.saturating_sub(self.softirqd_ticks) as f64 * tick_ns() as f64;
        (busy - ours * 100.0 / ns).max(0.0)
    }
}

/// CPU time of this whole process so far (all threads, user + system), ns.
pub fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID).unwrap_or(0)
}

/// The 1-minute load average.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// CPU model, CPU count, kernel release, date: for the report.
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub kernel: String,
    pub date: String,
    pub commit: String,
    /// The datapath, the BPF programs or the bench had uncommitted
    /// changes.
    pub dirty: bool,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| "?".into());
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into());
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "?".into());
        // What was measured is the tree as built: say if the datapath, the
        // programs or the bench were not the commit's.
        let dirty = std::process::Command::new("git")
            .args([
                "status",
                "--porcelain",
                "--",
                ":(top)datapath",
                ":(top)bpf/src",
                ":(top)bench/src",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .is_some_and(|o| !o.stdout.is_empty());
        Machine {
            cpu_model,
            cpus,
            kernel,
            date: today(),
            commit,
            dirty,
        }
    }
}

/// Today's date (UTC), YYYY-MM-DD.
fn today() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // RFC 3339: the date is the part before the `T`.
    rstwall_pcap::analyze::format_ts(now)[..10].to_string()
}
