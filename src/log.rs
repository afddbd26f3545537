//! Process log: one line per event on stderr, `<RFC3339 UTC> <LEVEL> <message>`.
//! Used for lifecycle events (start, reload, drain) and faults, never per request.

use std::io::Write;
use std::time::SystemTime;

fn timestamp() -> String {
    let mut out = Vec::with_capacity(24);
    crate::civil::push_rfc3339(&mut out, SystemTime::now());
    String::from_utf8_lossy(&out).into_owned()
}

fn line(level: &str, msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{} {level} {msg}", timestamp());
}

pub fn info(msg: &str) {
    line("INFO ", msg);
}

pub fn warn(msg: &str) {
    line("WARN ", msg);
}

pub fn error(msg: &str) {
    line("ERROR", msg);
}
