//! `--cpu-quota PCT`: a cgroup that caps the gateway's processes (ringway, or nginx's master
//! and workers) at PCT of one CPU, so that on a small machine the gateway, not the load tool,
//! is the bottleneck and requests per gateway CPU-second compares the gateways' work rather
//! than how fast the load tool can feed them.
//!
//! cgroup v2 (`/sys/fs/cgroup/cgroup.controllers` lists `cpu`): a child group with `cpu.max`
//! = `QUOTA 100000`. cgroup v1 (a `cpu` hierarchy at `/sys/fs/cgroup/cpu`, as in many
//! containers): `cpu.cfs_period_us` = 100000 and `cpu.cfs_quota_us` = QUOTA. The group is
//! created once per run (named after rwcompare's pid), each started gateway's processes are
//! moved into it (their later children and threads follow), and it is removed on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PERIOD_US: u64 = 100_000;

/// The run's CPU-limited cgroup, removed on drop.
pub struct Quota {
    dir: PathBuf,
    /// `cgroup v2 cpu.max 40000 100000` or `cgroup v1 cpu.cfs_quota_us 40000/100000`.
    pub describe: String,
    pub percent: f64,
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value)
        .map_err(|e| format!("cannot write `{value}` to {}: {e}", path.display()))
}

impl Quota {
    /// Creates the group with `percent` of one CPU (1..=100 × CPUs).
    pub fn create(percent: f64) -> Result<Quota, String> {
        let quota = (percent / 100.0 * PERIOD_US as f64).round() as u64;
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
            let q = Quota {
                describe: format!("cgroup v2 {}/cpu.max = {quota} {PERIOD_US}", dir.display()),
                dir,
                percent,
            };
            write(&q.dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
            return Ok(q);
        }
        if v1.join("cpu.cfs_quota_us").is_file() {
            let dir = v1.join(name);
            std::fs::create_dir(&dir).map_err(|e| {
                format!("--cpu-quota: cannot create {} (cgroup v1 cpu hierarchy; needs root and a writable mount): {e}", dir.display())
            })?;
            let q = Quota {
                describe: format!(
                    "cgroup v1 {}/cpu.cfs_quota_us = {quota} per cpu.cfs_period_us {PERIOD_US}",
                    dir.display()
                ),
                dir,
                percent,
            };
            write(&q.dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&q.dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            return Ok(q);
        }
        Err(
            "--cpu-quota: no cgroup with a cpu controller: neither cgroup v2 \
             (/sys/fs/cgroup/cgroup.controllers listing `cpu`) nor a cgroup v1 cpu hierarchy \
             (/sys/fs/cgroup/cpu/cpu.cfs_quota_us) is mounted"
                .into(),
        )
    }

    /// Moves process `pid` (all its threads) into the group.
    pub fn add(&self, pid: i32) -> Result<(), String> {
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }
}

impl Drop for Quota {
    fn drop(&mut self) {
        // The gateways were stopped before; a dying process may leave the group a moment late.
        let deadline = Instant::now() + Duration::from_secs(3);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.dir.exists() {
            eprintln!(
                "rwcompare: warning: could not remove cgroup {}",
                self.dir.display()
            );
        }
    }
}
