//! What the kernel says about processes and CPUs: CPU time (`/proc/PID/stat` utime+stime,
//! which covers every thread of the process), memory (`VmRSS`/`VmHWM` from
//! `/proc/PID/status`), children (by scanning `/proc`), per-CPU busy time (`/proc/stat`)
//! and the CPUs this process may run on.

/// Clock ticks per second (`USER_HZ`), the unit of `/proc` CPU times.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The fields of `/proc/PID/stat` after the command name (field 3 = state is index 0).
fn stat_fields(pid: i32) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// utime + stime of the whole process (all threads, live and exited), in ticks.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let f = stat_fields(pid)?;
    // utime is field 14, stime field 15; index 0 is field 3.
    Some(f.get(11)? + f.get(12)?)
}

/// Sum of [`cpu_ticks`] over `pids` (processes that vanished count 0).
pub fn cpu_ticks_sum(pids: &[i32]) -> u64 {
    pids.iter().filter_map(|&p| cpu_ticks(p)).sum()
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
pub fn status_kib(pid: i32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Sum of a status field over `pids`, or None if none of them could be read.
pub fn status_kib_sum(pids: &[i32], field: &str) -> Option<u64> {
    let vals: Vec<u64> = pids.iter().filter_map(|&p| status_kib(p, field)).collect();
    (!vals.is_empty()).then(|| vals.iter().sum())
}

/// Process ids whose parent is `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<i32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_fields(p).and_then(|f| f.get(1).copied()) == Some(pid as u64))
        .collect();
    out.sort_unstable();
    out
}

/// Busy ticks (everything but idle and iowait, softirq included) summed over `cpus`, from
/// `/proc/stat`.
pub fn cpus_busy_ticks(cpus: &[usize]) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let mut total = 0;
    for &c in cpus {
        let name = format!("cpu{c}");
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal (guest is already in user).
        let busy: u64 = v.iter().take(8).sum::<u64>()
            - v.get(3).copied().unwrap_or(0)
            - v.get(4).copied().unwrap_or(0);
        total += busy;
    }
    Some(total)
}

/// CPUs this process may run on, in order (taskset / cpuset respected).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// "2 CPUs (model name), Linux 6.1.0" for the report.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split(':').nth(1))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{n} CPUs ({model}), Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        assert!(cpu_ticks(me).is_some());
        assert!(status_kib(me, "VmRSS").unwrap() > 0);
        assert!(status_kib(me, "VmHWM").unwrap() > 0);
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus_busy_ticks(&cpus).is_some());
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(children_of(me).contains(&(child.id() as i32)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
