//! The Redis client against real redis-server processes: pipelined commands, scripts by SHA
//! with the NOSCRIPT fallback, ACL authentication, fast failure and automatic recovery when
//! the server dies and comes back, timeouts on a frozen server, and cluster routing with
//! MOVED redirects and a slot migration (ASK).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::{RedisCluster, RedisServer};
use ringway::redis::{block_on, Client, RedisError, RedisSettings, RedisShared, Script, Value};

fn client_for(nodes: &[String], cluster: bool, prefix: &str) -> Client {
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.parse().unwrap()).collect();
    Client::new(Arc::new(RedisShared::new(RedisSettings::for_nodes(
        addrs, cluster, prefix,
    ))))
}

#[test]
fn many_commands_in_flight_on_one_connection_get_their_own_replies() {
    let redis = RedisServer::start();
    let c = client_for(&[redis.addr()], false, "t1");
    block_on(async {
        let mut tasks = Vec::new();
        for i in 0..500 {
            let c = c.clone();
            tasks.push(monoio::spawn(async move {
                let k = format!("t1:k{i}");
                c.cmd(
                    Some(k.as_bytes()),
                    &[b"SET", k.as_bytes(), i.to_string().as_bytes()],
                )
                .await
                .unwrap();
                c.cmd(Some(k.as_bytes()), &[b"GET", k.as_bytes()])
                    .await
                    .unwrap()
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await, Value::Bytes(i.to_string().into_bytes()));
        }
    });
    assert_eq!(redis.cli(&["GET", "t1:k499"]).trim(), "499");
    assert_eq!(
        redis.cli(&["CLIENT", "LIST"]).lines().count(),
        2,
        "one pipelined connection (plus redis-cli's own)"
    );
}

#[test]
fn scripts_go_by_sha_and_reload_after_a_flush() {
    static INCR_BY: Script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let redis = RedisServer::start();
    let c = client_for(&[redis.addr()], false, "t2");
    block_on(async {
        assert_eq!(
            c.eval(&INCR_BY, &[b"t2:n"], &[b"5"]).await,
            Ok(Value::Int(5))
        );
        // The server forgets its scripts (restart, failover): the next call loads it again.
        c.cmd(None, &[b"SCRIPT", b"FLUSH"]).await.unwrap();
        assert_eq!(
            c.eval(&INCR_BY, &[b"t2:n"], &[b"2"]).await,
            Ok(Value::Int(7))
        );
        let err = c.cmd(None, &[b"NOSUCHCOMMAND"]).await.unwrap_err();
        assert!(matches!(err, RedisError::Server(m) if m.contains("unknown command")));
    });
    assert!(redis
        .cli(&["SCRIPT", "EXISTS", INCR_BY.sha()])
        .contains('1'));
}

#[test]
fn authenticates_with_the_password_from_the_settings() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let addrs = vec![redis.addr().parse().unwrap()];
    let mut wrong = RedisSettings::for_nodes(addrs.clone(), false, "t3");
    wrong.password = Some("nope".into());
    let mut right = wrong.clone();
    right.password = Some("s3cret".into());
    block_on(async {
        let bad = Client::new(Arc::new(RedisShared::new(wrong)));
        // The reason reaches the caller (and so the log), first from the refused AUTH, then
        // from every call while the node backs off; never the password itself.
        for _ in 0..2 {
            let e = bad.cmd(None, &[b"PING"]).await.unwrap_err().to_string();
            assert!(e.contains("AUTH refused") && e.contains("WRONGPASS"), "{e}");
            assert!(!e.contains("nope"), "{e}");
        }
        let good = Client::new(Arc::new(RedisShared::new(right)));
        assert_eq!(
            good.cmd(None, &[b"PING"]).await,
            Ok(Value::Status(b"PONG".to_vec()))
        );
    });
}

#[test]
fn a_dead_server_fails_fast_and_a_restarted_one_is_used_again() {
    let mut redis = RedisServer::start();
    let c = client_for(&[redis.addr()], false, "t4");
    let shared = c.shared().clone();
    block_on(async {
        assert!(c.cmd(None, &[b"PING"]).await.is_ok());
        redis.kill();
        assert!(c.cmd(None, &[b"PING"]).await.is_err());
        assert!(!shared.health.is_up());
        // While backing off, calls fail at once rather than waiting for a connect.
        let t = Instant::now();
        for _ in 0..100 {
            assert!(c.cmd(None, &[b"PING"]).await.is_err());
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        redis.restart();
        let deadline = Instant::now() + Duration::from_secs(5);
        while c.cmd(None, &[b"PING"]).await.is_err() {
            assert!(Instant::now() < deadline, "never reconnected");
            monoio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(shared.health.is_up());
    assert_eq!(shared.health.went_down.load(Relaxed), 1);
    assert_eq!(shared.health.went_up.load(Relaxed), 1);
}

#[test]
fn a_frozen_server_times_out_within_the_configured_timeout() {
    let redis = RedisServer::start();
    let c = client_for(&[redis.addr()], false, "t5");
    block_on(async {
        assert!(c.cmd(None, &[b"PING"]).await.is_ok());
        redis.pause();
        let t = Instant::now();
        assert_eq!(c.cmd(None, &[b"PING"]).await, Err(RedisError::Timeout));
        let took = t.elapsed();
        redis.resume();
        assert!(took < Duration::from_millis(1000), "{took:?}");
        // The late reply to the timed-out call must not be handed to the next caller.
        let k = b"t5:after";
        c.cmd(Some(k), &[b"SET", k, b"v"]).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match c.cmd(Some(k), &[b"GET", k]).await {
                Ok(v) => {
                    assert_eq!(v, Value::Bytes(b"v".to_vec()));
                    break;
                }
                Err(_) => assert!(Instant::now() < deadline),
            }
        }
    });
}

#[test]
fn cluster_commands_reach_the_slot_owner_and_follow_a_migration() {
    let cluster = RedisCluster::shared();
    let c = client_for(&cluster.nodes[..1], true, "t6");
    let shared = c.shared().clone();
    let get = |c: &Client, key: &'static str| {
        let c = c.clone();
        async move { c.cmd(Some(key.as_bytes()), &[b"GET", key.as_bytes()]).await }
    };
    // One runtime for the whole test: a client's connections live on the runtime that made them.
    block_on(async {
        for i in 0..200 {
            let k = format!("t6:{{item{i}}}:v");
            c.cmd(Some(k.as_bytes()), &[b"SET", k.as_bytes(), b"1"])
                .await
                .unwrap();
        }
        // Every key landed where the cluster says it belongs (redis-cli -c follows redirects).
        assert_eq!(cluster.cli(&["GET", "t6:{item199}:v"]).trim(), "1");

        // Move one key's slot to another master, the way `redis-cli --cluster reshard` does.
        let key = "t6:{item7}:v";
        let cli = common::redis::redis_cli;
        let slot = cluster.cli(&["CLUSTER", "KEYSLOT", key]).trim().to_string();
        let owner = cluster
            .nodes
            .iter()
            .find(|n| cli(n, &["CLUSTER", "COUNTKEYSINSLOT", &slot]).trim() != "0")
            .expect("the slot's owner")
            .clone();
        let target = cluster.nodes.iter().find(|n| **n != owner).unwrap().clone();
        let id = |n: &str| cli(n, &["CLUSTER", "MYID"]).trim().to_string();
        let (owner_id, target_id) = (id(&owner), id(&target));
        cli(
            &target,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &owner_id],
        );
        cli(
            &owner,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
        );
        let (host, port) = target.rsplit_once(':').unwrap();
        cli(
            &owner,
            &["MIGRATE", host, port, "", "0", "5000", "KEYS", key],
        );
        let before = shared.health.redirects.load(Relaxed);
        // Mid-migration the old owner answers ASK: the client asks the new one for this call.
        assert_eq!(get(&c, key).await, Ok(Value::Bytes(b"1".to_vec())));
        assert!(
            shared.health.redirects.load(Relaxed) > before,
            "ASK followed"
        );
        for n in &cluster.nodes {
            cli(n, &["CLUSTER", "SETSLOT", &slot, "NODE", &target_id]);
        }
        // Migration done: the old owner answers MOVED; the client follows and refreshes its map.
        let before = shared.health.redirects.load(Relaxed);
        for _ in 0..20 {
            assert_eq!(get(&c, key).await, Ok(Value::Bytes(b"1".to_vec())));
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        let moved = shared.health.redirects.load(Relaxed) - before;
        assert!(
            (1..20).contains(&moved),
            "MOVED followed, then the refreshed map used ({moved})"
        );
    });
}

#[test]
fn a_bad_redis_table_is_refused_with_file_line_and_field() {
    let base = "version = 1\n[[listeners]]\nname = \"p\"\naddress = \"127.0.0.1:0\"\n";
    let cases = [
        ("[redis]\nnodes = []\n", 6, "redis.nodes"),
        (
            "[redis]\nnodes = [\"no-such-host.invalid:6379\"]\n",
            6,
            "redis.nodes[0]",
        ),
        (
            "[redis]\nnodes = [\"127.0.0.1:6379\"]\ntimeout = \"0s\"\n",
            7,
            "redis.timeout",
        ),
        (
            "[redis]\nnodes = [\"127.0.0.1:6379\"]\ncluster = true\ndb = 3\n",
            8,
            "redis.db",
        ),
        (
            "[redis]\nnodes = [\"127.0.0.1:6379\"]\nprefix = \"a{b}\"\n",
            7,
            "redis.prefix",
        ),
        (
            "[redis]\nnodes = [\"127.0.0.1:6379\"]\npassword_env = \"RINGWAY_TEST_UNSET_VAR\"\n",
            7,
            "redis.password_env",
        ),
        (
            "[redis]\nnodes = [\"127.0.0.1:6379\"]\nconnections = 99\n",
            7,
            "redis.connections",
        ),
    ];
    for (table, line, field) in cases {
        let (code, _, err) = common::check_config(&format!("{base}{table}"));
        assert_ne!(code, 0, "{table}");
        assert!(err.contains(&format!(":{line}:")), "{table}: {err}");
        assert!(err.contains(field), "{table}: {err}");
    }
    let (code, out, err) = common::check_config(&format!(
        "{base}[redis]\nnodes = [\"127.0.0.1:6379\"]\ncluster = false\ntimeout = \"20ms\"\n"
    ));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("redis: 127.0.0.1:6379 (standalone), prefix \"ringway\", timeout 20ms"),
        "{out}"
    );
}

#[test]
fn tls_to_redis_is_verified_for_commands_and_subscriptions() {
    use common::tls::{Ca, Key};
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("redis test ca");
    ca.write(dir.path(), "ca");
    let srv = ca.server(dir.path(), "redis", &["redis.test"], Key::EcdsaP256);
    let tls_port = common::free_port().to_string();
    let (cert, key, ca_file) = (
        srv.cert_path.display().to_string(),
        srv.key_path.display().to_string(),
        dir.path().join("ca.pem").display().to_string(),
    );
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca_file,
        "--tls-auth-clients",
        "no",
    ]);
    let load = |name: &str| {
        let text = format!(
            "version = 1\n[[listeners]]\nname = \"p\"\naddress = \"127.0.0.1:0\"\n[redis]\n\
             nodes = [\"127.0.0.1:{tls_port}\"]\nprefix = \"t7\"\n\
             tls = {{ ca = \"ca.pem\", server_name = \"{name}\" }}\n"
        );
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let cfg = ringway::config::load(&path, 1).unwrap_or_else(|e| panic!("{e:?}"));
        Client::new(cfg.redis.clone().expect("[redis]"))
    };
    let good = load("redis.test");
    let wrong = load("not-redis.test");
    let shared = good.shared().clone();
    block_on(async {
        assert_eq!(
            good.cmd(None, &[b"PING"]).await,
            Ok(Value::Status(b"PONG".to_vec()))
        );
        let err = wrong.cmd(None, &[b"PING"]).await.unwrap_err();
        assert!(
            matches!(&err, RedisError::Unavailable(m) if m.contains("TLS")),
            "{err:?}"
        );
        // Pub/sub over TLS: a message published by another client arrives.
        let mut sub = ringway::redis::Subscription::open(shared.clone(), b"t7:chan")
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            good.cmd(None, &[b"PUBLISH", b"t7:chan", b"hello"])
                .await
                .unwrap();
            if let Ok(Some(m)) = sub.next(Duration::from_millis(100)).await {
                assert_eq!(m, b"hello");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no message over the TLS subscription"
            );
        }
        // Many calls in flight over one TLS connection keep their order.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let c = good.clone();
            tasks.push(monoio::spawn(async move {
                let k = format!("t7:{i}");
                c.cmd(None, &[b"SET", k.as_bytes(), k.as_bytes()])
                    .await
                    .unwrap();
                c.cmd(None, &[b"GET", k.as_bytes()]).await.unwrap()
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await, Value::Bytes(format!("t7:{i}").into_bytes()));
        }
    });
    // Only the TLS port was configured: a plain connection could not have answered.
    assert!(redis
        .cli(&["CONFIG", "GET", "tls-port"])
        .contains(&tls_port));
}

#[test]
fn cluster_failover_is_followed_without_a_restart() {
    let mut cluster = RedisCluster::start(3, 1);
    let c = client_for(&cluster.nodes[..1], true, "t8");
    let shared = c.shared().clone();
    let key = "t8:{fail}:v";
    let cli = common::redis::redis_cli;
    block_on(async {
        let k = key.as_bytes();
        c.cmd(Some(k), &[b"SET", k, b"kept"]).await.unwrap();
        // The replica has it before its master dies (WAIT within the client's 100 ms).
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.cmd(Some(k), &[b"WAIT", b"1", b"50"]).await != Ok(Value::Int(1)) {
            assert!(Instant::now() < deadline, "the replica never caught up");
        }
        let slot = cluster.cli(&["CLUSTER", "KEYSLOT", key]).trim().to_string();
        let master = (0..cluster.nodes.len())
            .find(|&i| {
                let n = &cluster.nodes[i];
                cli(n, &["ROLE"]).starts_with("master")
                    && cli(n, &["CLUSTER", "COUNTKEYSINSLOT", &slot]).trim() != "0"
            })
            .expect("the key's master");
        cluster.kill(master);
        let t = Instant::now();
        let deadline = t + Duration::from_secs(30);
        loop {
            if let Ok(v) = c.cmd(Some(k), &[b"GET", k]).await {
                assert_eq!(v, Value::Bytes(b"kept".to_vec()));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the promoted replica was never used"
            );
            monoio::time::sleep(Duration::from_millis(100)).await;
        }
        println!("served again {:?} after the master was killed", t.elapsed());
    });
    assert!(shared.health.went_down.load(Relaxed) >= 1);
    assert!(shared.health.is_up());
}

/// Callers abandoned at every point of a call (before their first poll, right after their
/// command was queued or sent, while the reply streams in) interleaved with callers that wait,
/// on one pipelined connection, with commands small enough to go out from the caller and large
/// enough (4 MiB) that the socket takes them in parts and the writer task sends the rest.
/// Every caller that waits gets its own reply, and the connection is never broken off (its
/// `CLIENT ID` is the same at the end), so no abandoned call ever left a half-written command
/// or shifted the replies by one.
#[test]
fn abandoned_calls_never_desync_the_pipelined_connection() {
    let redis = RedisServer::start();
    let mut settings = RedisSettings::for_nodes(vec![redis.addr().parse().unwrap()], false, "t9");
    // Megabytes in flight on two busy cores: a timeout here would be the machine, not a desync.
    settings.timeout = Duration::from_secs(20);
    let c = Client::new(Arc::new(RedisShared::new(settings)));
    block_on(async {
        let id = c.cmd(None, &[b"CLIENT", b"ID"]).await.unwrap();
        let mut checked = 0;
        for round in 0..8usize {
            let mut tasks = Vec::new();
            for i in 0..240usize {
                let c = c.clone();
                tasks.push(monoio::spawn(async move {
                    // Three calls in a row, so new commands keep coming while earlier ones
                    // are still being written or answered.
                    let mut ok = 0;
                    for k in 0..3usize {
                        let n = i * 3 + k;
                        let len = match n % 80 {
                            2 | 41 => 4 << 20,
                            5..=20 => 1 << 20,
                            _ => 1 + (n * 7) % 400,
                        };
                        let mut payload = format!("{round}:{n}:").into_bytes();
                        payload.resize(len.max(payload.len()), b'a' + (n % 26) as u8);
                        let args: [&[u8]; 2] = [b"ECHO", &payload];
                        let call = c.cmd(None, &args);
                        match n % 4 {
                            // Never polled: nothing may reach the socket.
                            0 => drop(call),
                            // Polled once (queued or sent), then dropped after a short wait
                            // that ends anywhere from before the command left to mid-reply.
                            1 => {
                                let wait = Duration::from_micros(((n * 37) % 300) as u64);
                                let _ = monoio::time::timeout(wait, call).await;
                            }
                            _ => {
                                let got = call.await;
                                assert_eq!(
                                    got.map(|v| v == Value::Bytes(payload)),
                                    Ok(true),
                                    "round {round}, call {n}: not its own reply"
                                );
                                ok += 1;
                            }
                        }
                    }
                    ok
                }));
            }
            for t in tasks {
                checked += t.await;
            }
        }
        assert_eq!(checked, 8 * 360);
        assert_eq!(
            c.cmd(None, &[b"CLIENT", b"ID"]).await.unwrap(),
            id,
            "the connection was broken off and redialled"
        );
    });
}
