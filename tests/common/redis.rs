//! Real Redis servers for tests: `RedisServer::start()` runs a private redis-server on a free
//! loopback port (killed on drop, and with the test process through PR_SET_PDEATHSIG), which a
//! test may `kill()` and `restart()` on the same port to play an outage. `RedisCluster::shared()`
//! is the 3-master cluster scripts/test.sh started (`RINGWAY_TEST_REDIS_CLUSTER`), or one this
//! test binary starts once. `redis_cli` asks an independent client (redis-cli) for assertions.
//! Tests share servers by giving every gateway group its own `[redis] prefix`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A private redis-server (it lives as long as the thread that started it, at most).
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// With extra `redis-server` arguments (e.g. `["--requirepass", "x"]`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "ringway-redis-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut s = RedisServer {
            child: None,
            port: super::free_port(),
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let mut args: Vec<String> = vec![
            "--port".into(),
            self.port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--protected-mode".into(),
            "no".into(),
        ];
        args.extend(self.extra.iter().cloned());
        self.child = Some(spawn_dying_with_us("redis-server", &args));
        wait_ready(&self.addr(), &self.auth());
    }

    fn auth(&self) -> Vec<String> {
        match self.extra.iter().position(|a| a == "--requirepass") {
            Some(i) => vec![
                "-a".into(),
                self.extra[i + 1].clone(),
                "--no-auth-warning".into(),
            ],
            None => vec![],
        }
    }

    /// `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL: connections reset, nothing saved.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port (after `kill`).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, libc::SIGSTOP) };
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
        }
    }

    /// `redis-cli` against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let auth = self.auth();
        let mut a: Vec<&str> = auth.iter().map(|s| s.as_str()).collect();
        a.extend_from_slice(args);
        redis_cli(&self.addr(), &a)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free port whose cluster-bus port (+10000) exists and is free too.
fn cluster_port() -> u16 {
    loop {
        let p = super::free_port();
        if p < 55_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// Runs `program` so that it dies when the test process does (a panicking test leaves no
/// stray servers behind).
fn spawn_dying_with_us(program: &str, args: &[String]) -> Child {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} (apt-get install redis-server): {e}"))
}

fn wait_ready(addr: &str, auth: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut a: Vec<&str> = auth.iter().map(|s| &**s).collect();
        a.push("PING");
        if redis_cli(addr, &a).trim() == "PONG" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redis-server on {addr} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `redis-cli -h HOST -p PORT ARGS...`, stdout as text (empty if it could not connect).
pub fn redis_cli(addr: &str, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Redis Cluster of 3 masters.
pub struct RedisCluster {
    /// `"127.0.0.1:PORT"` of each master.
    pub nodes: Vec<String>,
    servers: Vec<Child>,
    _dirs: Vec<PathBuf>,
}

impl RedisCluster {
    /// The cluster scripts/test.sh started, or one started for this test binary. Its servers
    /// are spawned from a thread that never ends: PR_SET_PDEATHSIG fires when the spawning
    /// *thread* exits, so spawning from the first test's thread would kill the cluster when
    /// that test finished.
    pub fn shared() -> &'static RedisCluster {
        static C: OnceLock<RedisCluster> = OnceLock::new();
        C.get_or_init(|| match std::env::var("RINGWAY_TEST_REDIS_CLUSTER") {
            Ok(list) if !list.trim().is_empty() => RedisCluster {
                nodes: list.split(',').map(|s| s.trim().to_string()).collect(),
                servers: Vec::new(),
                _dirs: Vec::new(),
            },
            _ => {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(RedisCluster::start(3, 0));
                    loop {
                        std::thread::park();
                    }
                });
                rx.recv().expect("the shared cluster")
            }
        })
    }

    /// Starts `masters × (1 + replicas)` cluster-enabled servers and joins them with
    /// `redis-cli --cluster create` (`nodes` lists every server; masters come first).
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        remove_stale_cluster_dirs();
        let mut servers = Vec::new();
        let mut nodes = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            let port = cluster_port();
            let dir =
                std::env::temp_dir().join(format!("ringway-cluster-{}-{port}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("cluster dir");
            let args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--dir",
                &dir.display().to_string(),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            servers.push(spawn_dying_with_us("redis-server", &args));
            let addr = format!("127.0.0.1:{port}");
            wait_ready(&addr, &[]);
            nodes.push(addr);
            dirs.push(dir);
        }
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = RedisCluster {
            nodes,
            servers,
            _dirs: dirs,
        };
        c.wait_ok();
        c
    }

    /// SIGKILLs the server at `nodes[i]` (a cluster this test started).
    pub fn kill(&mut self, i: usize) {
        let _ = self.servers[i].kill();
        let _ = self.servers[i].wait();
    }

    /// Waits until every node still running reports `cluster_state:ok`.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.nodes.iter().all(|n| {
            let info = redis_cli(n, &["CLUSTER", "INFO"]);
            info.is_empty() || info.contains("cluster_state:ok")
        }) {
            assert!(Instant::now() < deadline, "cluster never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis-cli -c` (follows redirects) against the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut a = vec!["-c"];
        a.extend_from_slice(args);
        redis_cli(&self.nodes[0], &a)
    }
}

/// Removes the data directories of clusters started by test processes that have ended. A
/// process's own directories outlive it (the shared cluster is never dropped, and its servers
/// die with the process), so each run clears what earlier runs left in the temp dir.
fn remove_stale_cluster_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("ringway-cluster-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
