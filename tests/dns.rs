//! Upstream host names: every A and AAAA record becomes a target, answers are re-resolved as
//! their TTL runs out and traffic follows, a failed lookup keeps the last good addresses, and
//! `preserve_host = false` sends the configured name. A DNS server stub on loopback UDP answers
//! from a table the test changes (and can go silent, or forge replies).

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::faults::FaultyUpstream;
use common::*;
use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Packet, ResourceRecord, CLASS, QTYPE, TYPE};

/// A loopback DNS server answering A/AAAA questions from `table`.
struct DnsStub {
    addr: SocketAddr,
    table: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
    ttl: Arc<AtomicUsize>,
    silent: Arc<AtomicBool>,
    /// Send a reply with the wrong id (pointing elsewhere) before each real one.
    forge: Arc<AtomicBool>,
    /// Never answer AAAA questions (as some middleboxes drop them).
    aaaa_silent: Arc<AtomicBool>,
    /// Answer over UDP with the truncation bit, and over TCP (same port) announce 65 535 bytes
    /// and send one every 100 ms (for at most 15 s).
    tcp_drip: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl DnsStub {
    fn start() -> DnsStub {
        // One port for both: TCP first (the kernel picks it), then UDP on the same number.
        let (tcp, sock) = (0..100)
            .find_map(|_| {
                let tcp = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
                let port = tcp.local_addr().ok()?.port();
                let udp = UdpSocket::bind(("127.0.0.1", port)).ok()?;
                Some((tcp, udp))
            })
            .expect("no port free for both UDP and TCP");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stub = DnsStub {
            addr: sock.local_addr().unwrap(),
            table: Arc::default(),
            ttl: Arc::new(AtomicUsize::new(1)),
            silent: Arc::default(),
            forge: Arc::default(),
            aaaa_silent: Arc::default(),
            tcp_drip: Arc::default(),
            queries: Arc::default(),
            stop: Arc::default(),
        };
        let (table, ttl, silent, forge, queries, stop) = (
            stub.table.clone(),
            stub.ttl.clone(),
            stub.silent.clone(),
            stub.forge.clone(),
            stub.queries.clone(),
            stub.stop.clone(),
        );
        let (aaaa_silent, tcp_drip) = (stub.aaaa_silent.clone(), stub.tcp_drip.clone());
        tcp.set_nonblocking(true).unwrap();
        let tcp_stop = stub.stop.clone();
        thread::spawn(move || {
            use std::io::Write;
            while !tcp_stop.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = tcp.accept() else {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let stop = tcp_stop.clone();
                thread::spawn(move || {
                    let t = Instant::now();
                    let _ = c.write_all(&[0xff, 0xff]);
                    while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(15) {
                        if c.write_all(&[0]).is_err() {
                            return;
                        }
                        thread::sleep(Duration::from_millis(100));
                    }
                });
            }
        });
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                queries.fetch_add(1, Ordering::SeqCst);
                if silent.load(Ordering::Relaxed) {
                    continue;
                }
                let Ok(q) = Packet::parse(&buf[..n]) else {
                    continue;
                };
                let is_aaaa = q.questions[0].qtype == QTYPE::TYPE(TYPE::AAAA);
                if is_aaaa && aaaa_silent.load(Ordering::Relaxed) {
                    continue;
                }
                if tcp_drip.load(Ordering::Relaxed) {
                    let mut p = Packet::new_reply(q.id());
                    p.questions.push(q.questions[0].clone());
                    p.set_flags(simple_dns::PacketFlag::TRUNCATION);
                    sock.send_to(&p.build_bytes_vec().unwrap(), from).ok();
                    continue;
                }
                let ttl = ttl.load(Ordering::Relaxed) as u32;
                let addrs = {
                    let t = table.lock().unwrap();
                    let name = q.questions[0].qname.to_string();
                    t.get(&name).cloned()
                };
                if forge.load(Ordering::Relaxed) {
                    let evil = vec!["127.0.0.9".parse().unwrap()];
                    let fake = answer(&q, q.id().wrapping_add(1), Some(&evil), ttl);
                    sock.send_to(&fake, from).ok();
                }
                let reply = answer(&q, q.id(), addrs.as_ref(), ttl);
                sock.send_to(&reply, from).ok();
            }
        });
        stub
    }

    fn set(&self, name: &str, addrs: &[&str]) {
        let ips = addrs.iter().map(|a| a.parse().unwrap()).collect();
        self.table.lock().unwrap().insert(name.to_string(), ips);
    }
}

impl Drop for DnsStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A reply to `q`: its records of the asked type, or NXDOMAIN when the name is unknown.
fn answer(q: &Packet<'_>, id: u16, addrs: Option<&Vec<IpAddr>>, ttl: u32) -> Vec<u8> {
    let mut p = Packet::new_reply(id);
    let question = q.questions[0].clone();
    let want = question.qtype;
    let name = question.qname.clone();
    p.questions.push(question);
    match addrs {
        None => *p.rcode_mut() = simple_dns::RCODE::NameError,
        Some(list) => {
            for ip in list {
                let rdata = match (ip, want) {
                    (IpAddr::V4(v4), QTYPE::TYPE(TYPE::A)) => RData::A(A {
                        address: u32::from(*v4),
                    }),
                    (IpAddr::V6(v6), QTYPE::TYPE(TYPE::AAAA)) => RData::AAAA(AAAA {
                        address: u128::from(*v6),
                    }),
                    _ => continue,
                };
                p.answers
                    .push(ResourceRecord::new(name.clone(), CLASS::IN, ttl, rdata));
            }
        }
    }
    p.build_bytes_vec().unwrap()
}

fn config(stub: &DnsStub, target: &str, extra_route: &str) -> String {
    format!(
        "[dns]\nservers = [\"{}\"]\nmin_ttl = \"200ms\"\nmax_ttl = \"2s\"\ntimeout = \"300ms\"\n\n\
         [upstreams.svc]\ntargets = [{{ address = \"{target}\" }}]\n\n\
         [[routes]]\nname = \"all\"\nprefix = \"/\"\nproxy = {{ upstream = \"svc\"{extra_route} }}\n",
        stub.addr
    )
}

/// The `X-Upstream` names of `n` sequential requests.
fn served_by(g: &Gateway, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = get(g.addr, "/x");
            assert_eq!(r.status, 200, "{}", r.text());
            r.header("x-upstream").unwrap_or("").to_string()
        })
        .collect()
}

/// Two upstream servers on the same port at 127.0.0.2 and 127.0.0.3.
fn pair() -> (FaultyUpstream, FaultyUpstream) {
    let a = FaultyUpstream::start_on("a", "127.0.0.2:0".parse().unwrap());
    let b_addr = SocketAddr::new("127.0.0.3".parse().unwrap(), a.addr.port());
    let b = FaultyUpstream::start_on("b", b_addr);
    (a, b)
}

#[test]
fn traffic_follows_a_changed_answer() {
    let (a, b) = pair();
    let stub = DnsStub::start();
    stub.set("svc.test", &["127.0.0.2"]);
    let port = a.addr.port();
    let g = Gateway::start(&config(&stub, &format!("svc.test:{port}"), ""));
    assert!(served_by(&g, 5).iter().all(|s| s == "a"));

    stub.set("svc.test", &["127.0.0.3"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let changed_at = Instant::now();
    loop {
        let now_b = served_by(&g, 1)[0] == "b";
        if now_b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traffic never moved: {}",
            g.logs()
        );
        thread::sleep(Duration::from_millis(50));
    }
    // The answer's TTL (1 s) bounds how long the old address is used.
    assert!(changed_at.elapsed() < Duration::from_secs(3));
    assert!(served_by(&g, 5).iter().all(|s| s == "b"));
    assert!(
        g.logs().contains("svc.test now resolves to"),
        "{}",
        g.logs()
    );
    let before = b.count();
    served_by(&g, 3);
    assert_eq!(b.count(), before + 3);
}

#[test]
fn every_a_and_aaaa_record_is_a_target() {
    let (a, _b) = pair();
    let v6 = SocketAddr::new("::1".parse().unwrap(), a.addr.port());
    let Ok(c) = std::panic::catch_unwind(|| FaultyUpstream::start_on("c", v6)) else {
        eprintln!("no IPv6 loopback here: checking A records only");
        return;
    };
    let stub = DnsStub::start();
    stub.set("svc.test", &["127.0.0.2", "127.0.0.3", "::1"]);
    let g = Gateway::start(&config(&stub, &format!("svc.test:{}", a.addr.port()), ""));
    let seen = served_by(&g, 30);
    for name in ["a", "b", "c"] {
        assert!(
            seen.iter().any(|s| s == name),
            "{name} never served: {seen:?}"
        );
    }
    drop(c);
}

#[test]
fn a_failed_lookup_keeps_the_last_good_addresses() {
    let (a, _b) = pair();
    let stub = DnsStub::start();
    stub.set("svc.test", &["127.0.0.2"]);
    let body = config(&stub, &format!("svc.test:{}", a.addr.port()), "");
    let g = Gateway::start(&body);
    stub.silent.store(true, Ordering::Relaxed);
    // Well past the TTL: lookups time out, traffic keeps flowing to the last good address.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_eq!(served_by(&g, 1)[0], "a");
        thread::sleep(Duration::from_millis(100));
    }
    g.wait_log("keeping the last good addresses", Duration::from_secs(3));
    assert_eq!(
        g.log_count("keeping the last good addresses"),
        1,
        "logged once per failure spell"
    );
    // A reload while DNS is down still succeeds: the name once resolved.
    assert!(g.reload(&body), "{}", g.logs());
    assert_eq!(served_by(&g, 1)[0], "a");
    // Recovery is noticed and logged.
    stub.silent.store(false, Ordering::Relaxed);
    g.wait_log("svc.test resolves again", Duration::from_secs(5));
}

#[test]
fn an_unknown_name_is_a_config_error_naming_the_field() {
    let stub = DnsStub::start();
    let text = format!(
        "[[listeners]]\nname = \"l\"\naddress = \"127.0.0.1:{}\"\n\n{}",
        free_port(),
        config(&stub, "nowhere.test:80", "")
    );
    let (code, out, err) = check_config(&text);
    assert_ne!(code, 0, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(all.contains("upstreams.svc.targets[0].address"), "{all}");
    assert!(all.contains("nowhere.test"), "{all}");
    assert!(
        all.contains("check.toml:12:"),
        "the line of the target: {all}"
    );
}

/// A name server that drops AAAA questions (or refuses them) while answering A made every
/// name unresolvable: the failed AAAA question threw the A records away, so `check`, start and
/// reload refused the config. The A records are used, as the C library's resolver does.
#[test]
fn a_server_that_drops_aaaa_questions_still_gives_its_a_records() {
    let (a, _b) = pair();
    let stub = DnsStub::start();
    stub.set("svc.test", &["127.0.0.2"]);
    stub.aaaa_silent.store(true, Ordering::Relaxed);
    let target = format!("svc.test:{}", a.addr.port());
    let g = Gateway::start_workers(&config(&stub, &target, ""), 1);
    assert_eq!(served_by(&g, 3), ["a", "a", "a"]);
}

/// An answer holding only `0.0.0.0` (or `::`, a multicast or the broadcast address) names no
/// upstream: a connect to `0.0.0.0` reaches this host's own services. Such addresses are left
/// out, and a name with nothing else is refused like an unknown one.
#[test]
fn unspecified_and_multicast_answers_never_become_targets() {
    let stub = DnsStub::start();
    stub.set(
        "zero.test",
        &["0.0.0.0", "::", "224.0.0.1", "255.255.255.255"],
    );
    let text = format!(
        "[[listeners]]\nname = \"l\"\naddress = \"127.0.0.1:{}\"\n\n{}",
        free_port(),
        config(&stub, "zero.test:80", "")
    );
    let (code, out, err) = check_config(&text);
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(all.contains("no usable A or AAAA record"), "{all}");
}

/// A truncated UDP answer sends the lookup to TCP, where the server announced 65 535 bytes and
/// sent one every 100 ms. The read timeout was set once and bounded each read, not the
/// lookup, so `check` (and a reload, and every name's refresh) waited as long as the server
/// kept dripping. The lookup now ends at its `timeout`.
#[test]
fn a_tcp_answer_dripped_a_byte_at_a_time_ends_at_the_timeout() {
    let stub = DnsStub::start();
    stub.set("slow.test", &["127.0.0.2"]);
    stub.tcp_drip.store(true, Ordering::Relaxed);
    let text = format!(
        "[[listeners]]\nname = \"l\"\naddress = \"127.0.0.1:{}\"\n\n{}",
        free_port(),
        config(&stub, "slow.test:80", "")
    );
    let t = Instant::now();
    let (code, out, err) = check_config(&text);
    let took = t.elapsed();
    let all = format!("{out}{err}");
    assert_ne!(code, 0, "{all}");
    assert!(all.contains("slow.test"), "{all}");
    // Two questions of 300 ms each, with room for a loaded machine; the drip lasts 15 s.
    assert!(took < Duration::from_secs(5), "check took {took:?}: {all}");
}

#[test]
fn preserve_host_false_sends_the_configured_name() {
    let (a, _b) = pair();
    let stub = DnsStub::start();
    stub.set("svc.test", &["127.0.0.2"]);
    let target = format!("svc.test:{}", a.addr.port());
    let g = Gateway::start(&config(&stub, &target, ", preserve_host = false"));
    let r = request(g.addr, "GET", "/x", &[("Host", "client.example")], b"");
    assert_eq!(r.status, 200);
    let host = a
        .requests()
        .last()
        .unwrap()
        .header("host")
        .unwrap()
        .to_string();
    assert_eq!(host, target, "the upstream sees its own name, not an IP");
}

#[test]
fn a_zero_ttl_is_held_to_the_minimum() {
    let (a, _b) = pair();
    let stub = DnsStub::start();
    stub.set("svc.test", &["127.0.0.2"]);
    stub.ttl.store(0, Ordering::Relaxed);
    let _g = Gateway::start(&config(&stub, &format!("svc.test:{}", a.addr.port()), ""));
    let start = stub.queries.load(Ordering::SeqCst);
    thread::sleep(Duration::from_secs(2));
    let asked = stub.queries.load(Ordering::SeqCst) - start;
    // min_ttl 200 ms, A + AAAA per lookup: about 20 in 2 s; a TTL of 0 taken literally would
    // ask thousands of times.
    assert!(asked >= 4, "re-resolved at all: {asked}");
    assert!(asked <= 30, "held to min_ttl: {asked}");
}

#[test]
fn a_forged_reply_is_ignored() {
    let (a, _b) = pair();
    let stub = DnsStub::start();
    stub.set("svc.test", &["127.0.0.2"]);
    stub.forge.store(true, Ordering::Relaxed);
    let g = Gateway::start(&config(&stub, &format!("svc.test:{}", a.addr.port()), ""));
    assert!(served_by(&g, 5).iter().all(|s| s == "a"));
    thread::sleep(Duration::from_millis(1500));
    assert!(served_by(&g, 5).iter().all(|s| s == "a"));
    assert!(!g.logs().contains("127.0.0.9"), "{}", g.logs());
}

#[test]
fn family_ipv4_leaves_aaaa_records_out() {
    let (a, _b) = pair();
    let stub = DnsStub::start();
    // ::1 has no server on this port: as a target it would cost refused connects.
    stub.set("svc.test", &["127.0.0.2", "::1"]);
    let body = config(&stub, &format!("svc.test:{}", a.addr.port()), "")
        .replace("[dns]\n", "[dns]\nfamily = \"ipv4\"\n");
    let g = Gateway::start(&body);
    assert!(served_by(&g, 10).iter().all(|s| s == "a"));
    assert!(!g.logs().contains("[::1]"), "{}", g.logs());

    let bad = body.replace("family = \"ipv4\"", "family = \"ipv5\"");
    let text = format!(
        "[[listeners]]\nname = \"l\"\naddress = \"127.0.0.1:{}\"\n\n{bad}",
        free_port()
    );
    let (code, out, err) = check_config(&text);
    assert_ne!(code, 0);
    assert!(format!("{out}{err}").contains("dns.family"), "{out}{err}");
}

/// A DNS change re-compiles the serving generation from its own text and the files that text
/// named as they were read at the last reload: a keys file edited on disk since then is not
/// picked up that way (neither a half-written one, which would hold the new addresses back,
/// nor a finished one, which would skip the operator's `check` and SIGHUP). SIGHUP reads it.
#[test]
fn a_dns_change_does_not_pick_up_files_edited_since_the_last_reload() {
    let (a, b) = pair();
    let stub = DnsStub::start();
    stub.set("svc.test", &["127.0.0.2"]);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.toml");
    let alice = create_key(dir.path(), &keys, "alice", None);
    let routes = config(&stub, &format!("svc.test:{}", a.addr.port()), "")
        .replace("prefix = \"/\"\n", "prefix = \"/\"\npolicies = [\"key\"]\n");
    let body = format!(
        "[api_keys]\nfile = \"{}\"\nhash = \"sha256\"\n\n\
         [policies.key]\napi_key = {{ query = \"k\" }}\n\n{routes}",
        keys.display()
    );
    let g = Gateway::start(&body);
    let call = |key: &str| get(g.addr, &format!("/x?k={key}"));
    assert_eq!(call(&alice).status, 200);
    assert_eq!(call(&alice).header("x-upstream"), Some("a"));

    // The operator starts editing the keys file: a new key is in, and the file is half
    // written. Then the name's answer changes.
    let bob = create_key(dir.path(), &keys, "bob", None);
    let finished = std::fs::read_to_string(&keys).unwrap();
    std::fs::write(&keys, &finished[..finished.len() / 2]).unwrap();
    stub.set("svc.test", &["127.0.0.3"]);
    let moved = wait_for(Duration::from_secs(5), || {
        call(&alice).header("x-upstream") == Some("b")
    });
    assert!(moved.is_some(), "traffic never moved: {}", g.logs());
    assert!(
        !g.logs().contains("could not be applied"),
        "the half-written file held the new addresses back: {}",
        g.logs()
    );
    // The file is finished: still not live until a reload says so.
    std::fs::write(&keys, &finished).unwrap();
    stub.set("svc.test", &["127.0.0.2"]);
    assert!(
        wait_for(Duration::from_secs(5), || call(&alice).header("x-upstream")
            == Some("a"))
        .is_some(),
        "{}",
        g.logs()
    );
    assert_eq!(
        call(&bob).status,
        401,
        "bob's key went live without a reload"
    );
    assert!(g.reload(&body), "{}", g.logs());
    assert_eq!(call(&bob).status, 200);
    assert!(b.count() > 0);
}
