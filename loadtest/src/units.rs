//! Command-line value parsers: durations (`250ms`, `10s`, `2m`), byte sizes (`512`, `1KiB`,
//! `10MB`) and CPU lists (`0`, `0,2`, `0-3`). Pure functions, used as clap `value_parser`s so
//! a bad value is a usage error (exit 2) naming the flag.

use std::time::Duration;

/// Parses a duration with a unit: `us`, `ms`, `s`, `m`, `h`. A bare `0` is accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("`{s}` needs a unit: us, ms, s, m or h"))?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("`{s}` must start with a number"));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{num}` is not a number"))?;
    let secs = match unit {
        "us" => value / 1_000_000.0,
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit `{unit}` (use us, ms, s, m or h)")),
    };
    if !secs.is_finite() || secs > 366.0 * 86_400.0 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a byte count: plain digits, or digits with `B`, `KB`/`MB`/`GB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("`{s}` must start with digits"));
    }
    let value: usize = num.parse().map_err(|_| format!("`{num}` is too large"))?;
    let mult: usize = match unit {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown size unit `{unit}` (use B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    value
        .checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A list of CPU numbers, as given to `--cpus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses a CPU list such as `1`, `0,2` or `0-3,6`. The result keeps the given order.
pub fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim) {
        let bad = || format!("`{part}` is not a CPU number or range (e.g. 0,2 or 0-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b || b >= 4096 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => {
                let c: usize = part.parse().map_err(|_| bad())?;
                if c >= 4096 {
                    return Err(bad());
                }
                cpus.push(c);
            }
        }
    }
    Ok(CpuList(cpus))
}

/// Pins the calling thread to one CPU. Errors are returned, not fatal: the caller warns.
pub fn pin_current_thread(cpu: usize) -> Result<(), String> {
    monoio::utils::bind_to_cpu_set([cpu]).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))
}

/// Formats a duration for humans: `850us`, `12.34ms`, `1.50s`.
pub fn fmt_micros(us: u64) -> String {
    if us < 1000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

/// Formats a count with a metric suffix: `950`, `12.3k`, `4.56M`.
pub fn fmt_count(n: f64) -> String {
    if n < 10_000.0 {
        format!("{n:.0}")
    } else if n < 10_000_000.0 {
        format!("{:.1}k", n / 1000.0)
    } else {
        format!("{:.2}M", n / 1_000_000.0)
    }
}

/// Formats a byte count with binary units: `512B`, `1.5KiB`, `3.20MiB`.
pub fn fmt_bytes(n: u64) -> String {
    let f = n as f64;
    if n < 1024 {
        format!("{n}B")
    } else if n < 1 << 20 {
        format!("{:.1}KiB", f / 1024.0)
    } else if n < 1 << 30 {
        format!("{:.2}MiB", f / (1 << 20) as f64)
    } else {
        format!("{:.2}GiB", f / (1u64 << 30) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1e400s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("20"), Ok(20));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("2KB"), Ok(2000));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("").is_err());
        assert!(parse_size("1XB").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("1"), Ok(CpuList(vec![1])));
        assert_eq!(parse_cpus("0,2"), Ok(CpuList(vec![0, 2])));
        assert_eq!(parse_cpus("0-2,5"), Ok(CpuList(vec![0, 1, 2, 5])));
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_micros(850), "850us");
        assert_eq!(fmt_micros(12_340), "12.34ms");
        assert_eq!(fmt_micros(1_500_000), "1.50s");
        assert_eq!(fmt_count(950.0), "950");
        assert_eq!(fmt_count(12_345.0), "12.3k");
        assert_eq!(fmt_bytes(1536), "1.5KiB");
    }
}
