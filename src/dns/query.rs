//! One DNS lookup: an A or AAAA question sent to a name server over UDP (TCP when the answer
//! comes back truncated), the answer checked against the question (id, name, type, source
//! address), CNAME chains followed within the answer, and the shortest TTL of the records used.
//!
//! The response is hostile input: anything malformed, mismatched or oversized is an error or
//! ignored, never a panic, and at most `MAX_ADDRS` addresses are taken from one answer.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use simple_dns::rdata::RData;
use simple_dns::{Name, Packet, PacketFlag, Question, CLASS, QCLASS, QTYPE, RCODE, TYPE};

/// Most addresses taken from one answer (the balancer tracks tried targets in 64 bits).
pub const MAX_ADDRS: usize = 32;

/// Which record type to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// What a server said about a name.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub addrs: Vec<IpAddr>,
    /// Shortest TTL among the records used (seconds); for "no records", the server's
    /// negative-caching hint is not parsed: the caller's minimum applies.
    pub ttl: u32,
}

/// Asks `server` for `name`'s records of `family`. `Ok` with no addresses when the name
/// exists without such records or does not exist (NXDOMAIN); `Err` for no answer, a server
/// failure or a malformed reply.
pub fn lookup(
    server: SocketAddr,
    name: &str,
    family: Family,
    timeout: Duration,
) -> Result<Answer, String> {
    let id = random_id();
    let query = build_query(id, name, family)?;
    let deadline = Instant::now() + timeout;
    let reply = udp_exchange(server, &query, deadline)?;
    let packet = Packet::parse(&reply).map_err(|e| format!("malformed DNS reply: {e}"))?;
    if packet.has_flags(PacketFlag::TRUNCATION) {
        let reply = tcp_exchange(server, &query, deadline)?;
        let packet = Packet::parse(&reply).map_err(|e| format!("malformed DNS reply: {e}"))?;
        return answer_of(&packet, id, name, family);
    }
    answer_of(&packet, id, name, family)
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // A predictable id only weakens spoofing resistance; the source check still applies.
    let _ = getrandom::fill(&mut b);
    u16::from_ne_bytes(b)
}

fn qtype(family: Family) -> TYPE {
    match family {
        Family::V4 => TYPE::A,
        Family::V6 => TYPE::AAAA,
    }
}

fn build_query(id: u16, name: &str, family: Family) -> Result<Vec<u8>, String> {
    let mut p = Packet::new_query(id);
    p.set_flags(PacketFlag::RECURSION_DESIRED);
    let qname = Name::new(name).map_err(|e| format!("bad host name {name:?}: {e}"))?;
    p.questions.push(Question::new(
        qname,
        QTYPE::TYPE(qtype(family)),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.build_bytes_vec()
        .map_err(|e| format!("cannot build a DNS query for {name:?}: {e}"))
}

/// Sends the query and waits for a reply from `server` with the query's id; datagrams from
/// anyone else are dropped (a spoofing attempt or a late answer to an earlier query).
fn udp_exchange(server: SocketAddr, query: &[u8], deadline: Instant) -> Result<Vec<u8>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("DNS socket: {e}"))?;
    sock.send_to(query, server)
        .map_err(|e| format!("DNS query to {server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no DNS answer from {server} in time"));
        }
        sock.set_read_timeout(Some(left)).ok();
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == server && n >= 2 && buf[..2] == query[..2] => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(format!("no DNS answer from {server} in time")),
        }
    }
}

/// The same query over TCP (two-byte length prefix), for answers too big for a datagram.
fn tcp_exchange(server: SocketAddr, query: &[u8], deadline: Instant) -> Result<Vec<u8>, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    let fail = |e: std::io::Error| format!("DNS over TCP to {server}: {e}");
    let mut s =
        TcpStream::connect_timeout(&server, left.max(Duration::from_millis(1))).map_err(fail)?;
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .map_err(fail)?;
    s.set_write_timeout(Some(left.max(Duration::from_millis(1))))
        .map_err(fail)?;
    let len = u16::try_from(query.len()).map_err(|_| "DNS query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    s.write_all(&framed).map_err(fail)?;
    let mut len = [0u8; 2];
    read_by(&mut s, &mut len, deadline).map_err(fail)?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    read_by(&mut s, &mut reply, deadline).map_err(fail)?;
    Ok(reply)
}

/// Fills `buf` before `deadline`. A socket read timeout bounds one `read`, not the whole: a
/// server dripping a 64 KiB answer a byte at a time would otherwise hold the lookup for 65 536
/// timeouts, and with it `check`, a reload, or the refresh of every upstream name.
fn read_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf[filled..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The addresses a reply gives for the question, after checking it answers that question.
fn answer_of(p: &Packet<'_>, id: u16, name: &str, family: Family) -> Result<Answer, String> {
    if p.id() != id || !p.has_flags(PacketFlag::RESPONSE) {
        return Err("DNS reply does not match the query".into());
    }
    let asked = Name::new(name).map_err(|e| format!("bad host name {name:?}: {e}"))?;
    let same_question = p.questions.len() == 1
        && p.questions[0].qname == asked
        && p.questions[0].qtype == QTYPE::TYPE(qtype(family));
    if !same_question {
        return Err("DNS reply answers another question".into());
    }
    match p.rcode() {
        RCODE::NoError => {}
        RCODE::NameError => {
            return Ok(Answer {
                addrs: Vec::new(),
                ttl: 0,
            })
        }
        other => return Err(format!("DNS server answered {other:?}")),
    }
    // Names that stand for the one asked: it, and every CNAME target reached from it.
    let mut names = vec![asked];
    let mut ttl = u32::MAX;
    for _ in 0..8 {
        let mut grew = false;
        for rr in &p.answers {
            if let RData::CNAME(c) = &rr.rdata {
                if names.contains(&rr.name) && !names.contains(&c.0) {
                    names.push(c.0.clone());
                    ttl = ttl.min(rr.ttl);
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    let mut addrs = Vec::new();
    for rr in p.answers.iter().filter(|rr| names.contains(&rr.name)) {
        let ip = match (&rr.rdata, family) {
            (RData::A(a), Family::V4) => IpAddr::V4(Ipv4Addr::from(a.address)),
            (RData::AAAA(a), Family::V6) => IpAddr::V6(Ipv6Addr::from(a.address)),
            _ => continue,
        };
        if addrs.len() < MAX_ADDRS && !addrs.contains(&ip) {
            addrs.push(ip);
            ttl = ttl.min(rr.ttl);
        }
    }
    if addrs.is_empty() {
        ttl = 0;
    }
    Ok(Answer { addrs, ttl })
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::rdata::{A, CNAME};
    use simple_dns::ResourceRecord;

    fn reply(id: u16, q: &str, answers: Vec<ResourceRecord<'static>>) -> Vec<u8> {
        let mut p = Packet::new_reply(id);
        p.questions.push(Question::new(
            Name::new_unchecked(q).into_owned(),
            QTYPE::TYPE(TYPE::A),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p.answers = answers;
        p.build_bytes_vec().unwrap()
    }

    fn a(name: &'static str, ip: [u8; 4], ttl: u32) -> ResourceRecord<'static> {
        ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            ttl,
            RData::A(A {
                address: u32::from(Ipv4Addr::from(ip)),
            }),
        )
    }

    #[test]
    fn follows_cnames_and_takes_the_shortest_ttl() {
        let cname = ResourceRecord::new(
            Name::new_unchecked("api.test"),
            CLASS::IN,
            30,
            RData::CNAME(CNAME(Name::new_unchecked("lb.test"))),
        );
        let bytes = reply(
            7,
            "api.test",
            vec![
                cname,
                a("lb.test", [10, 0, 0, 1], 20),
                a("lb.test", [10, 0, 0, 2], 60),
                // Not reachable from the question: ignored.
                a("evil.test", [6, 6, 6, 6], 1),
            ],
        );
        let p = Packet::parse(&bytes).unwrap();
        let got = answer_of(&p, 7, "api.test", Family::V4).unwrap();
        assert_eq!(got.ttl, 20);
        assert_eq!(
            got.addrs,
            vec![
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn mismatched_replies_are_refused() {
        let bytes = reply(7, "api.test", vec![a("api.test", [10, 0, 0, 1], 5)]);
        let p = Packet::parse(&bytes).unwrap();
        assert!(
            answer_of(&p, 8, "api.test", Family::V4).is_err(),
            "wrong id"
        );
        assert!(
            answer_of(&p, 7, "other.test", Family::V4).is_err(),
            "wrong name"
        );
        assert!(
            answer_of(&p, 7, "api.test", Family::V6).is_err(),
            "wrong type"
        );
    }

    #[test]
    fn answers_are_capped() {
        let many: Vec<_> = (0..200u8)
            .map(|i| a("api.test", [10, 1, 0, i], 5))
            .collect();
        let bytes = reply(1, "api.test", many);
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(
            answer_of(&p, 1, "api.test", Family::V4)
                .unwrap()
                .addrs
                .len(),
            MAX_ADDRS
        );
    }

    #[test]
    fn garbage_does_not_parse_into_an_answer() {
        for junk in [&b""[..], b"\x00", &[0xff; 12], &[0u8; 600]] {
            if let Ok(p) = Packet::parse(junk) {
                assert!(answer_of(&p, 0, "api.test", Family::V4).is_err());
            }
        }
    }

    #[test]
    fn compression_pointer_loops_do_not_hang() {
        // Names that point at themselves or at each other: a parser that follows pointers
        // without a bound never returns.
        let mut self_loop = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        self_loop.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        self_loop.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
        let mut pair = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        pair.extend_from_slice(&[1, b'a', 0xc0, 18, 0, 1, 0, 1]);
        pair.extend_from_slice(&[1, b'b', 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
        for junk in [self_loop, pair] {
            if let Ok(p) = Packet::parse(&junk) {
                assert!(answer_of(&p, 0x1234, "api.test", Family::V4).is_err());
            }
        }
    }
}
