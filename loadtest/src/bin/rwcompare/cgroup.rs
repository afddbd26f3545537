//! `--cpu-quota PCT`: cgroups that cap the gateway's processes (ringway, or nginx's master
//! and workers) at PCT of each gateway CPU, so that on a small machine the gateway, not the
//! load tool, is the bottleneck and requests per gateway CPU-second compares the gateways'
//! work rather than how fast the load tool can feed them.
//!
//! cgroup v2 (`/sys/fs/cgroup/cgroup.controllers` lists `cpu`): a child group with `cpu.max`
//! = `QUOTA 100000`. cgroup v1 (a `cpu` hierarchy at `/sys/fs/cgroup/cpu`, as in many
//! containers): `cpu.cfs_period_us` = 100000 and `cpu.cfs_quota_us` = QUOTA. The groups are
//! created once per run (named after rwcompare's pid), each started gateway's processes are
//! moved into them (their later children and threads follow), and they are removed on drop.
//!
//! With N gateway CPUs (`--workers N`) the gateway gets PCT of *each*: a CFS quota is one
//! budget for the whole group, spent on whichever CPUs its tasks run, so a single group of
//! N × PCT would let one busy worker take another's share. On cgroup v1 every gateway CPU has
//! its own group of PCT: a thread (ringway's `ringway-wK` workers) or process (nginx workers)
//! whose affinity is that one CPU goes there, everything else (ringway's other threads,
//! nginx's master) into the first CPU's group. v1 places threads one by one (`tasks`); v2
//! would need a threaded subtree, so there one group of N × PCT is shared (the report says so).
//!
//! The groups also get 8× the default CPU weight (v1 `cpu.shares` 8192, v2 `cpu.weight`
//! 800). Without it, a gateway that shares a CPU with the load tool and the upstream (every
//! CPU is shared with `--workers 2` on 2 CPUs, or with `--share-cpus`) gets the scheduler's fair
//! share of that CPU, a third with two other busy threads, before it ever reaches its quota,
//! and runs in long-delayed bursts that batch many requests per wakeup. With the weight it
//! runs when it has work, up to its quota, whatever shares its CPU: the quota is what limits
//! it in every placement (and against other work on the machine), so runs compare.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PERIOD_US: u64 = 100_000;
/// 8 × the default weight (v1 `cpu.shares` 1024, v2 `cpu.weight` 100).
const SHARES_V1: u64 = 8192;
const WEIGHT_V2: u64 = 800;

/// The run's CPU-limited cgroups, removed on drop.
pub struct Quota {
    /// (the gateway CPU whose pinned tasks go here, or None for "everything"; the group).
    /// The first group also takes every task not pinned to one gateway CPU.
    groups: Vec<(Option<usize>, PathBuf)>,
    /// `cgroup v2 cpu.max 40000 100000` or `cgroup v1 cpu.cfs_quota_us 40000/100000`.
    pub describe: String,
    /// Percent of each gateway CPU.
    pub percent: f64,
    /// Gateway CPUs the quota covers.
    pub cpus: usize,
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value)
        .map_err(|e| format!("cannot write `{value}` to {}: {e}", path.display()))
}

fn quota_us(percent: f64) -> u64 {
    (percent / 100.0 * PERIOD_US as f64).round() as u64
}

impl Quota {
    /// Creates the group(s): `percent` (1..=100) of each CPU in `gateway_cpus`.
    pub fn create(percent: f64, gateway_cpus: &[usize]) -> Result<Quota, String> {
        let n = gateway_cpus.len().max(1);
        let name = format!("rwcompare-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup");
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let controllers =
            std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "cpu") {
            // v2: the cpu controller must be enabled for the root's children.
            let sub = v2.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&sub).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "cpu") {
                write(&sub, "+cpu").map_err(|e| {
                    format!("--cpu-quota: cannot enable the cpu controller (cgroup v2, run as root?): {e}")
                })?;
            }
            let dir = v2.join(name);
            std::fs::create_dir(&dir).map_err(|e| {
                format!("--cpu-quota: cannot create {} (cgroup v2 needs root and a writable /sys/fs/cgroup): {e}", dir.display())
            })?;
            let quota = quota_us(percent * n as f64);
            let mut describe = format!(
                "cgroup v2 {}/cpu.max = {quota} {PERIOD_US}, cpu.weight {WEIGHT_V2}",
                dir.display()
            );
            if n > 1 {
                describe.push_str(&format!(
                    ", one budget shared by the {n} gateway CPUs (v2: no per-CPU groups)"
                ));
            }
            let q = Quota {
                groups: vec![(None, dir)],
                describe,
                percent,
                cpus: n,
            };
            write(
                &q.groups[0].1.join("cpu.max"),
                &format!("{quota} {PERIOD_US}"),
            )?;
            write(&q.groups[0].1.join("cpu.weight"), &WEIGHT_V2.to_string())?;
            return Ok(q);
        }
        if v1.join("cpu.cfs_quota_us").is_file() {
            let quota = quota_us(percent);
            let dirs: Vec<(Option<usize>, PathBuf)> = if n == 1 {
                vec![(None, v1.join(&name))]
            } else {
                gateway_cpus
                    .iter()
                    .map(|&c| (Some(c), v1.join(format!("{name}-cpu{c}"))))
                    .collect()
            };
            // Built group by group, so a failure half-way removes what exists (drop).
            let mut q = Quota {
                groups: Vec::with_capacity(dirs.len()),
                describe: String::new(),
                percent,
                cpus: n,
            };
            for (cpu, dir) in dirs {
                std::fs::create_dir(&dir).map_err(|e| {
                    format!("--cpu-quota: cannot create {} (cgroup v1 cpu hierarchy; needs root and a writable mount): {e}", dir.display())
                })?;
                q.groups.push((cpu, dir));
                let dir = &q.groups[q.groups.len() - 1].1;
                write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                write(&dir.join("cpu.shares"), &SHARES_V1.to_string())?;
            }
            q.describe = if n == 1 {
                format!(
                    "cgroup v1 {}/cpu.cfs_quota_us = {quota} per cpu.cfs_period_us {PERIOD_US}, cpu.shares {SHARES_V1}",
                    q.groups[0].1.display()
                )
            } else {
                let dirs: Vec<String> = q
                    .groups
                    .iter()
                    .map(|(_, d)| d.display().to_string())
                    .collect();
                format!(
                    "cgroup v1 cpu.cfs_quota_us = {quota} per cpu.cfs_period_us {PERIOD_US}, cpu.shares {SHARES_V1}, in each of {} (one group per gateway CPU, tasks placed by their affinity)",
                    dirs.join(", ")
                )
            };
            return Ok(q);
        }
        Err(
            "--cpu-quota: no cgroup with a cpu controller: neither cgroup v2 \
             (/sys/fs/cgroup/cgroup.controllers listing `cpu`) nor a cgroup v1 cpu hierarchy \
             (/sys/fs/cgroup/cpu/cpu.cfs_quota_us) is mounted"
                .into(),
        )
    }

    /// Moves process `pid` (all its threads) into the first group; with one group per
    /// gateway CPU, then moves each of its threads pinned to exactly one of those CPUs into
    /// that CPU's group.
    pub fn add(&self, pid: i32) -> Result<(), String> {
        let Some((_, first)) = self.groups.first() else {
            return Ok(());
        };
        write(&first.join("cgroup.procs"), &pid.to_string())?;
        if self.groups.len() == 1 {
            return Ok(());
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Ok(());
        };
        for tid in tasks.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
                .unwrap_or_default();
            let Some(cpu) = single_cpu(&status) else {
                continue;
            };
            if let Some((_, dir)) = self.groups.iter().find(|(c, _)| *c == Some(cpu)) {
                if dir != first {
                    // A thread that exited meanwhile cannot be moved; that is fine.
                    match write(&dir.join("tasks"), &tid.to_string()) {
                        Err(_) if !Path::new(&format!("/proc/{pid}/task/{tid}")).exists() => {}
                        r => r?,
                    }
                }
            }
        }
        Ok(())
    }

    /// The report's text: "40% of one CPU (...)" or "40% of each of 2 gateway CPUs (...)".
    pub fn summary(&self) -> String {
        if self.cpus == 1 {
            format!("{}% of one CPU ({})", self.percent, self.describe)
        } else {
            format!(
                "{}% of each of {} gateway CPUs ({})",
                self.percent, self.cpus, self.describe
            )
        }
    }
}

/// The one CPU a task may run on, from its `/proc/.../status` `Cpus_allowed_list` (`3`), or
/// None when it may run on several (`0-1`, `0,2`).
fn single_cpu(status: &str) -> Option<usize> {
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?
        .trim();
    list.parse().ok()
}

impl Drop for Quota {
    fn drop(&mut self) {
        for (_, dir) in &self.groups {
            // The gateways were stopped before; a dying process may leave the group a moment late.
            let deadline = Instant::now() + Duration::from_secs(3);
            while std::fs::remove_dir(dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if dir.exists() {
                eprintln!(
                    "rwcompare: warning: could not remove cgroup {}",
                    dir.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_pinned_to_one_cpu_is_recognised() {
        let s = "Name:\tringway-w1\nCpus_allowed:\t2\nCpus_allowed_list:\t1\nMems_allowed:\t1\n";
        assert_eq!(single_cpu(s), Some(1));
        assert_eq!(single_cpu("Cpus_allowed_list:\t0-1\n"), None);
        assert_eq!(single_cpu("Cpus_allowed_list:\t0,2\n"), None);
        assert_eq!(single_cpu("Name:\tx\n"), None);
    }
}
