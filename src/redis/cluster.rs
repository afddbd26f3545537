//! Redis Cluster routing: which node owns which of the 16384 slots (from `CLUSTER SLOTS`), and
//! reading `MOVED` / `ASK` redirects. The slot of a key is `redis_protocol::redis_keyslot`
//! (CRC16 of the key, or of its `{hash tag}`).

use std::net::{IpAddr, SocketAddr};

use super::error::RedisError;
use super::resp::Value;

pub(super) const SLOTS: usize = 16384;

/// Slot → node address, for every slot some master serves.
pub(super) struct SlotMap {
    owner: Vec<Option<u16>>,
    pub(super) nodes: Vec<SocketAddr>,
}

impl SlotMap {
    /// Parses a `CLUSTER SLOTS` reply. Masters only: replicas are not read from.
    pub(super) fn parse(reply: Value) -> Result<SlotMap, RedisError> {
        let bad = |m: &str| RedisError::Protocol(format!("CLUSTER SLOTS: {m}"));
        let mut map = SlotMap {
            owner: vec![None; SLOTS],
            nodes: Vec::new(),
        };
        for range in reply.into_array().ok_or_else(|| bad("not an array"))? {
            let mut parts = range
                .into_array()
                .ok_or_else(|| bad("range not an array"))?;
            if parts.len() < 3 {
                return Err(bad("short range"));
            }
            let start = parts[0].as_int().ok_or_else(|| bad("start"))?;
            let end = parts[1].as_int().ok_or_else(|| bad("end"))?;
            let master = std::mem::replace(&mut parts[2], Value::Nil)
                .into_array()
                .ok_or_else(|| bad("master"))?;
            let addr = node_addr(&master).ok_or_else(|| bad("master address"))?;
            if !(0..SLOTS as i64).contains(&start) || !(start..SLOTS as i64).contains(&end) {
                return Err(bad("slot out of range"));
            }
            let idx = match map.nodes.iter().position(|n| *n == addr) {
                Some(i) => i,
                None => {
                    map.nodes.push(addr);
                    map.nodes.len() - 1
                }
            };
            for s in start..=end {
                map.owner[s as usize] = Some(idx as u16);
            }
        }
        Ok(map)
    }

    /// The master serving `slot`, if the map knows one.
    pub(super) fn node_for(&self, slot: u16) -> Option<SocketAddr> {
        let i = (*self.owner.get(usize::from(slot))?)?;
        self.nodes.get(usize::from(i)).copied()
    }
}

fn node_addr(node: &[Value]) -> Option<SocketAddr> {
    let ip: IpAddr = std::str::from_utf8(node.first()?.as_bytes()?)
        .ok()?
        .parse()
        .ok()?;
    let port = u16::try_from(node.get(1)?.as_int()?).ok()?;
    Some(SocketAddr::new(ip, port))
}

/// A redirect in an error reply: `MOVED 3999 127.0.0.1:6381` or `ASK 3999 127.0.0.1:6381`.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Redirect {
    Moved(SocketAddr),
    Ask(SocketAddr),
}

pub(super) fn redirect(err: &RedisError) -> Option<Redirect> {
    let RedisError::Server(msg) = err else {
        return None;
    };
    let mut words = msg.split_ascii_whitespace();
    let kind = words.next()?;
    let _slot = words.next()?;
    let addr: SocketAddr = words.next()?.parse().ok()?;
    match kind {
        "MOVED" => Some(Redirect::Moved(addr)),
        "ASK" => Some(Redirect::Ask(addr)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ip: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::Bytes(ip.into()),
            Value::Int(port),
            Value::Bytes(b"id".to_vec()),
        ])
    }

    #[test]
    fn parses_slots_and_redirects() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(8000),
                node("127.0.0.1", 7000),
            ]),
            Value::Array(vec![
                Value::Int(8001),
                Value::Int(16383),
                node("127.0.0.1", 7001),
            ]),
        ]);
        let m = SlotMap::parse(reply).unwrap();
        assert_eq!(m.node_for(0).unwrap().port(), 7000);
        assert_eq!(m.node_for(16383).unwrap().port(), 7001);
        assert!(SlotMap::parse(Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(99_999),
            node("127.0.0.1", 1)
        ])]))
        .is_err());
        assert_eq!(
            redirect(&RedisError::Server("MOVED 12 127.0.0.1:7002".into())),
            Some(Redirect::Moved("127.0.0.1:7002".parse().unwrap()))
        );
        assert_eq!(
            redirect(&RedisError::Server("ASK 12 127.0.0.1:7002".into())),
            Some(Redirect::Ask("127.0.0.1:7002".parse().unwrap()))
        );
        assert_eq!(redirect(&RedisError::Server("ERR x".into())), None);
    }
}
