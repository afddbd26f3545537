//! Access logs: one line per request, written without ever blocking a worker.
//!
//! Each worker owns a [`CoreLog`] that formats lines ([`format`]) into a core-local buffer. A
//! buffer that reaches 32 KiB, or whatever is buffered when the worker calls [`CoreLog::flush`]
//! (every ~200 ms and at shutdown), is handed as one batch to the single `ringway-accesslog`
//! writer thread through a bounded channel with `try_send`. Invariants:
//! - A worker never blocks on the log: when the writer is behind (channel full) the batch is
//!   dropped and its lines counted ([`CoreLog::take_dropped`]); no lock is taken per request.
//! - The writer does one `write_all` per batch, so a line is never split between files.
//! - Target changes and reopen requests (SIGUSR1/logrotate) are applied by the writer on its
//!   next wake (at most ~100 ms later, even with no traffic); a file that cannot be opened is
//!   reported and the old one kept.
//! - The writer exits once every [`AccessLog`] handle is gone, after writing what was queued.
//!
//! This file only declares the modules and re-exports: `record` (format, target, the record),
//! `format` (the line formats), `writer` (`CoreLog`, `AccessLog` and the writer thread),
//! `redact` (API keys out of logged targets).

mod format;
mod record;
pub mod redact;
mod writer;

pub use format::{format_combined, format_json};
pub use record::{LogFormat, LogRecord, LogTarget};
pub use writer::{open_append, AccessLog, CoreLog};
