//! `--zipf N[:S]`: the URL's `{k}` becomes one of N keys per request, drawn from a Zipf
//! distribution with exponent S (default 1.0): key 0 is the most requested, key i is asked
//! `1/(i+1)^S` as often. Every request is serialized up front (N heads), and each connection
//! draws with its own xorshift generator and a binary search in the cumulative weights, so
//! the request loop still formats nothing.

/// The N serialized requests and their cumulative probabilities.
#[derive(Debug)]
pub struct ZipfRequests {
    requests: Vec<Vec<u8>>,
    cdf: Vec<f64>,
}

/// Most keys `--zipf` accepts (every request is kept in memory).
pub const MAX_KEYS: usize = 1_000_000;

/// Parses `N` or `N:S`.
pub fn parse(s: &str) -> Result<(usize, f64), String> {
    let (n, exp) = match s.split_once(':') {
        Some((n, e)) => (
            n,
            e.parse::<f64>()
                .map_err(|_| format!("bad exponent {e:?}"))?,
        ),
        None => (s, 1.0),
    };
    let n: usize = n.parse().map_err(|_| format!("bad key count {n:?}"))?;
    if !(1..=MAX_KEYS).contains(&n) {
        return Err(format!("--zipf: 1..={MAX_KEYS} keys"));
    }
    if !(exp.is_finite() && (0.0..=5.0).contains(&exp)) {
        return Err("--zipf: the exponent must be within 0..=5".into());
    }
    Ok((n, exp))
}

impl ZipfRequests {
    /// `build(k)` serializes the request for key `k`.
    pub fn new(
        n: usize,
        exp: f64,
        mut build: impl FnMut(usize) -> Result<Vec<u8>, String>,
    ) -> Result<ZipfRequests, String> {
        let mut requests = Vec::with_capacity(n);
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 0..n {
            requests.push(build(k)?);
            total += 1.0 / ((k + 1) as f64).powf(exp);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Ok(ZipfRequests { requests, cdf })
    }

    /// The request for the key `rng` draws.
    pub fn pick(&self, rng: &mut u64) -> &[u8] {
        // xorshift64*
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        let r = rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let u = (r >> 11) as f64 / (1u64 << 53) as f64;
        let i = self
            .cdf
            .partition_point(|&c| c < u)
            .min(self.requests.len() - 1);
        &self.requests[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_zero_is_drawn_most_and_every_draw_is_in_range() {
        let z = ZipfRequests::new(100, 1.0, |k| Ok(k.to_string().into_bytes())).unwrap();
        let mut rng = 0x1234_5678_9abc_def1u64;
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            let k: usize = std::str::from_utf8(z.pick(&mut rng))
                .unwrap()
                .parse()
                .unwrap();
            counts[k] += 1;
        }
        // H(100) ≈ 5.19: key 0 gets ≈19 %, key 1 ≈9.6 %, key 99 ≈0.19 %.
        assert!((17_000..21_000).contains(&counts[0]), "{}", counts[0]);
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[99]);
        assert!(counts[99] > 50);
    }

    #[test]
    fn parse_rejects_nonsense() {
        assert_eq!(parse("10").unwrap(), (10, 1.0));
        assert_eq!(parse("10:0.8").unwrap(), (10, 0.8));
        assert!(parse("0").is_err());
        assert!(parse("10:x").is_err());
        assert!(parse("10:-1").is_err());
    }
}
