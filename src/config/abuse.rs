//! Compiles the abusive-client limits of `[limits]`: connection caps (`max_connections`,
//! `max_connections_per_ip`, `ipv6_prefix`) and the minimum data rate (`min_data_rate`,
//! `data_rate_grace`). Defaults live here; bad values are positioned errors.

use std::time::Duration;

use toml::Spanned;

use super::errors::{int_in, Diag};
use super::model::{ConnLimits, MinDataRate};
use super::raw::RawLimits;
use super::units::dur;

/// Default process-wide cap on open client connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Default minimum data rate (bytes per second), as Kestrel's.
pub const DEFAULT_MIN_DATA_RATE: u64 = 240;
/// Default time a transfer may run below the minimum rate before it counts.
pub const DEFAULT_DATA_RATE_GRACE: Duration = Duration::from_secs(5);

/// A count within `range`, or `default` (see `errors::int_in`).
fn count(
    errs: &mut Diag,
    v: &Option<Spanned<i64>>,
    field: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> u64 {
    int_in(errs, v, field, default, range, "")
}

pub(super) fn conn_limits(l: &RawLimits, errs: &mut Diag) -> ConnLimits {
    ConnLimits {
        max: count(
            errs,
            &l.max_connections,
            "limits.max_connections",
            DEFAULT_MAX_CONNECTIONS as u64,
            0..=100_000_000,
        ) as usize,
        per_ip: count(
            errs,
            &l.max_connections_per_ip,
            "limits.max_connections_per_ip",
            0,
            0..=u32::MAX as u64,
        ) as u32,
        ipv6_prefix: count(errs, &l.ipv6_prefix, "limits.ipv6_prefix", 64, 1..=128) as u8,
    }
}

pub(super) fn min_data_rate(l: &RawLimits, errs: &mut Diag) -> MinDataRate {
    let rate = l
        .min_data_rate
        .as_ref()
        .map_or(DEFAULT_MIN_DATA_RATE, |r| r.get_ref().0);
    if rate > 1_000_000_000 {
        if let Some(r) = &l.min_data_rate {
            errs.at(
                r.span(),
                "limits.min_data_rate",
                "must be at most 1GB (bytes per second); 0 turns the minimum off",
            );
        }
    }
    MinDataRate {
        ns_per_byte: if rate == 0 || rate > 1_000_000_000 {
            0
        } else {
            1_000_000_000 / rate
        },
        grace: dur(&l.data_rate_grace, DEFAULT_DATA_RATE_GRACE),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::compile::{compile, parse};
    use std::path::Path;

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\n";

    fn errors(extra: &str) -> String {
        let src = format!("{BASE}{extra}");
        let raw = parse(&src, Path::new("t.toml")).unwrap();
        match compile(raw, &src, Path::new("t.toml"), 1) {
            Ok(_) => String::new(),
            Err(e) => e
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn defaults_and_values() {
        let src = format!(
            "{BASE}[limits]\nmax_connections = 10\nmax_connections_per_ip = 3\nipv6_prefix = 48\nmin_data_rate = \"1KiB\"\ndata_rate_grace = \"2s\"\n[timeouts]\ntunnel_idle = \"1m\"\n"
        );
        let raw = parse(&src, Path::new("t.toml")).unwrap();
        let c = compile(raw, &src, Path::new("t.toml"), 1).unwrap();
        assert_eq!(
            (
                c.conn_limits.max,
                c.conn_limits.per_ip,
                c.conn_limits.ipv6_prefix
            ),
            (10, 3, 48)
        );
        assert_eq!(c.timeouts.min_data_rate.ns_per_byte, 1_000_000_000 / 1024);
        assert_eq!(c.timeouts.min_data_rate.grace.as_secs(), 2);
        assert_eq!(c.timeouts.tunnel_idle.as_secs(), 60);

        let raw = parse(BASE, Path::new("t.toml")).unwrap();
        let c = compile(raw, BASE, Path::new("t.toml"), 1).unwrap();
        assert_eq!(c.conn_limits.max, super::DEFAULT_MAX_CONNECTIONS);
        assert_eq!((c.conn_limits.per_ip, c.conn_limits.ipv6_prefix), (0, 64));
        assert_eq!(c.timeouts.min_data_rate.ns_per_byte, 1_000_000_000 / 240);
        assert_eq!(c.timeouts.client_body_total.as_secs(), 300);
        assert_eq!(c.timeouts.lingering_bytes, 1 << 20);
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let e = errors("[limits]\nipv6_prefix = 129\n");
        assert!(e.contains(":4:") && e.contains("limits.ipv6_prefix"), "{e}");
        let e = errors("[limits]\nmax_connections_per_ip = -1\n");
        assert!(e.contains("limits.max_connections_per_ip"), "{e}");
        let e = errors("[timeouts]\ntunnel_idle = \"0s\"\n");
        assert!(e.contains("timeouts.tunnel_idle"), "{e}");
        let e = errors("[limits]\nmin_data_rate = \"2GB\"\n");
        assert!(e.contains("limits.min_data_rate"), "{e}");
        assert_eq!(errors("[limits]\nmin_data_rate = 0\n"), "");
    }
}
