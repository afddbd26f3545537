//! A listener's `[listeners.http2]` table: the HTTP/2 limits every connection on it runs
//! under (streams, header list, frames, windows, idle time) and the flood budgets (resets,
//! pings, settings, empty frames per second) past which the gateway answers GOAWAY.
//!
//! Invariants: every value is bounded to what RFC 9113 allows and the defaults match what
//! nginx, Envoy and h2o ship; the compiled `Http2Settings` is immutable and shared (`Arc`).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::errors::{int_in, positive, Fail, Report};
use super::units::{RawDuration, RawSize};

/// The raw `[listeners.http2]` table.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttp2 {
    #[schemars(with = "Option<i64>")]
    pub max_concurrent_streams: Option<Spanned<i64>>,
    #[schemars(with = "Option<RawSize>")]
    pub max_header_list_size: Option<Spanned<RawSize>>,
    #[schemars(with = "Option<RawSize>")]
    pub max_frame_size: Option<Spanned<RawSize>>,
    #[schemars(with = "Option<RawSize>")]
    pub stream_window: Option<Spanned<RawSize>>,
    #[schemars(with = "Option<RawSize>")]
    pub connection_window: Option<Spanned<RawSize>>,
    #[schemars(with = "Option<RawDuration>")]
    pub idle_timeout: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<i64>")]
    pub max_resets_per_second: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub max_pings_per_second: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub max_settings_per_second: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub max_empty_frames_per_second: Option<Spanned<i64>>,
}

/// The compiled HTTP/2 settings of one listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http2Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: streams beyond it are refused (REFUSED_STREAM).
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE, enforced after HPACK decoding.
    pub max_header_list_size: u32,
    /// SETTINGS_MAX_FRAME_SIZE (16 KiB ..= 16 MiB - 1).
    pub max_frame_size: u32,
    /// The receive window of each stream (how much request body a stream buffers at most).
    pub stream_window: u32,
    /// The receive window of the whole connection.
    pub connection_window: u32,
    /// With no open stream for this long, the connection is closed with GOAWAY.
    pub idle_timeout: Duration,
    /// Flood budgets: frames per second (token bucket, burst = one second's worth).
    pub max_resets_per_second: u32,
    pub max_pings_per_second: u32,
    pub max_settings_per_second: u32,
    pub max_empty_frames_per_second: u32,
}

impl Http2Settings {
    /// The flood budgets of a connection on this listener.
    pub fn budgets(&self) -> crate::h2flood::Budgets {
        crate::h2flood::Budgets {
            resets: self.max_resets_per_second,
            pings: self.max_pings_per_second,
            settings: self.max_settings_per_second,
            empty_frames: self.max_empty_frames_per_second,
        }
    }
}

impl Default for Http2Settings {
    fn default() -> Self {
        let budgets = crate::h2flood::Budgets::default();
        Http2Settings {
            max_concurrent_streams: 128,
            max_header_list_size: 16 * 1024,
            max_frame_size: 16 * 1024,
            stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_resets_per_second: budgets.resets,
            max_pings_per_second: budgets.pings,
            max_settings_per_second: budgets.settings,
            max_empty_frames_per_second: budgets.empty_frames,
        }
    }
}

/// RFC 9113 §6.5.2: SETTINGS_MAX_FRAME_SIZE bounds; §6.9.1: the largest window.
const MIN_FRAME: u64 = 16 * 1024;
const MAX_FRAME: u64 = (1 << 24) - 1;
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// Compiles the table (absent = defaults). Problems go to `fail` with fields relative to it.
pub fn compile(raw: Option<&RawHttp2>, fail: &mut Fail<'_>) -> Http2Settings {
    let d = Http2Settings::default();
    let Some(raw) = raw else {
        return d;
    };
    let per_sec = |fail: &mut Fail<'_>, v: &Option<Spanned<i64>>, f: &str, def: u32| {
        int_in(fail, v, f, def, 1..=1_000_000, "")
    };
    Http2Settings {
        max_concurrent_streams: int_in(
            fail,
            &raw.max_concurrent_streams,
            "max_concurrent_streams",
            d.max_concurrent_streams,
            1..=10_000,
            "",
        ),
        max_header_list_size: size_in(
            fail,
            &raw.max_header_list_size,
            "max_header_list_size",
            d.max_header_list_size,
            (1024, 1024 * 1024),
        ),
        max_frame_size: size_in(
            fail,
            &raw.max_frame_size,
            "max_frame_size",
            d.max_frame_size,
            (MIN_FRAME, MAX_FRAME),
        ),
        stream_window: size_in(
            fail,
            &raw.stream_window,
            "stream_window",
            d.stream_window,
            (65_535, MAX_WINDOW),
        ),
        connection_window: size_in(
            fail,
            &raw.connection_window,
            "connection_window",
            d.connection_window,
            (65_535, MAX_WINDOW),
        ),
        idle_timeout: positive(fail, &raw.idle_timeout, "idle_timeout", d.idle_timeout),
        max_resets_per_second: per_sec(
            fail,
            &raw.max_resets_per_second,
            "max_resets_per_second",
            d.max_resets_per_second,
        ),
        max_pings_per_second: per_sec(
            fail,
            &raw.max_pings_per_second,
            "max_pings_per_second",
            d.max_pings_per_second,
        ),
        max_settings_per_second: per_sec(
            fail,
            &raw.max_settings_per_second,
            "max_settings_per_second",
            d.max_settings_per_second,
        ),
        max_empty_frames_per_second: per_sec(
            fail,
            &raw.max_empty_frames_per_second,
            "max_empty_frames_per_second",
            d.max_empty_frames_per_second,
        ),
    }
}

/// A size within `lo..=hi` bytes, or `default` (with an error at the value) otherwise.
fn size_in(
    fail: &mut Fail<'_>,
    v: &Option<Spanned<RawSize>>,
    field: &str,
    default: u32,
    (lo, hi): (u64, u64),
) -> u32 {
    match v {
        None => default,
        Some(s) if (lo..=hi).contains(&s.get_ref().0) => s.get_ref().0 as u32,
        Some(s) => {
            fail.report(
                s.span(),
                field,
                format!("must be between {lo} and {hi} bytes"),
            );
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_str(body: &str) -> (Http2Settings, Vec<String>) {
        let raw: RawHttp2 = toml::from_str(body).unwrap();
        let mut errs = Vec::new();
        let mut fail =
            |_s: std::ops::Range<usize>, f: &str, m: String| errs.push(format!("{f}: {m}"));
        let s = compile(Some(&raw), &mut fail);
        (s, errs)
    }

    #[test]
    fn defaults_and_values() {
        let (s, errs) = compile_str("max_concurrent_streams = 10\nstream_window = \"1MiB\"\n");
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(s.max_concurrent_streams, 10);
        assert_eq!(s.stream_window, 1024 * 1024);
        assert_eq!(s.max_frame_size, 16 * 1024);
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let (_, errs) = compile_str(
            "max_frame_size = 100\nstream_window = \"4GiB\"\nmax_pings_per_second = 0\n\
             max_concurrent_streams = 0\nidle_timeout = \"0s\"\n",
        );
        let all = errs.join("\n");
        for f in [
            "max_frame_size",
            "stream_window",
            "max_pings_per_second",
            "max_concurrent_streams",
            "idle_timeout",
        ] {
            assert!(all.contains(f), "{f} missing in {all}");
        }
    }
}
