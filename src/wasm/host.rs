//! The proxy-wasm ABI 0.2.1 host side: the state a filter's store carries (`Host`), the
//! functions a module imports from `env` (`linker`), and checked access to the module's linear
//! memory.
//!
//! Invariants: every pointer and length a module hands over is checked against its memory
//! before use (a bad one traps the call with `Abuse`, it never panics or reads outside);
//! nothing is allocated from a module-given length before that check; header names and values
//! a filter writes are validated where they are written (lowercase token names, values passing
//! `http1::is_safe_header_value`, never framing or hop-by-hop fields). Imports the host does
//! not provide get stubs that answer `Unimplemented` (WASI ones `ENOSYS`), so filters built
//! against a larger host still instantiate.

use std::fmt;
use std::sync::Arc;

use wasmi::{Caller, Error, Extern, FuncType, Linker, Module, StoreLimits, Val, ValType};

use crate::http1;

/// Status codes (`WasmResult` in the ABI).
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const UNIMPLEMENTED: i32 = 12;
}

/// Header map types.
pub const MAP_REQUEST_HEADERS: i32 = 0;
pub const MAP_RESPONSE_HEADERS: i32 = 2;
/// Buffer types.
pub const BUFFER_REQUEST_BODY: i32 = 0;
pub const BUFFER_VM_CONFIGURATION: i32 = 6;
pub const BUFFER_PLUGIN_CONFIGURATION: i32 = 7;

/// What the compiled policy shares with every instance of its module.
#[derive(Debug)]
pub struct Plugin {
    /// The policy's name (log lines, metric labels).
    pub name: String,
    /// `configuration`, handed to `proxy_on_configure`.
    pub configuration: Vec<u8>,
}

/// A header map as a filter sees it: `(lowercase name, value)` in order.
pub type HeaderMap = Vec<(Vec<u8>, Vec<u8>)>;

/// A request's facts for `proxy_get_property`, by dotted path (`source.address`).
pub type Props = Vec<(&'static str, Vec<u8>)>;

/// The answer a filter chose with `proxy_send_local_response`.
#[derive(Debug, Default)]
pub struct Local {
    pub status: u16,
    /// Validated `(name, value)` pairs.
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Which callback runs, so the host knows which maps and buffers exist and may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Start, configuration, context creation and deletion.
    Root,
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
}

/// A store's data: limits, the plugin, and the current request's maps and buffers.
pub struct Host {
    pub limits: StoreLimits,
    pub plugin: Arc<Plugin>,
    pub phase: Phase,
    /// The request's header map (pseudo-headers first), live across the request callbacks.
    pub request: HeaderMap,
    /// The response's header map (with `:status`) during `proxy_on_response_headers`.
    pub response: HeaderMap,
    /// The request body prefix the request-body callback sees.
    pub body: Vec<u8>,
    /// The current request's facts (`proxy_get_property`).
    pub props: Props,
    /// A local response the filter asked for.
    pub local: Option<Local>,
    /// Log lines the current call may still write (a filter cannot flood the log).
    pub logs_left: u32,
    /// The filter may have changed the request map (a write call reached it).
    pub request_dirty: bool,
}

/// Log lines one call into a filter may write; later ones are dropped.
pub const LOGS_PER_CALL: u32 = 32;
/// Longest log line kept, in bytes.
const LOG_LINE_MAX: usize = 1024;
/// Most fields a header map may hold after a filter's edits.
const MAP_MAX: usize = 256;

impl Host {
    /// A store's data for `plugin`, with memory capped at `max_memory` bytes.
    pub fn new(plugin: Arc<Plugin>, max_memory: usize) -> Host {
        let limits = wasmi::StoreLimitsBuilder::new()
            .memory_size(max_memory)
            .memories(1)
            .tables(4)
            .table_elements(100_000)
            .instances(1)
            .build();
        Host {
            limits,
            plugin,
            phase: Phase::Root,
            request: Vec::new(),
            response: Vec::new(),
            body: Vec::new(),
            props: Vec::new(),
            local: None,
            logs_left: LOGS_PER_CALL,
            request_dirty: false,
        }
    }

    fn map(&self, map: i32) -> Option<&HeaderMap> {
        match (map, self.phase) {
            (MAP_REQUEST_HEADERS, Phase::RequestHeaders | Phase::RequestBody) => {
                Some(&self.request)
            }
            (MAP_REQUEST_HEADERS, Phase::ResponseHeaders) => Some(&self.request),
            (MAP_RESPONSE_HEADERS, Phase::ResponseHeaders) => Some(&self.response),
            _ => None,
        }
    }

    /// The map a filter may change now (request headers only before the request goes on).
    fn map_mut(&mut self, map: i32) -> Option<&mut HeaderMap> {
        match (map, self.phase) {
            (MAP_REQUEST_HEADERS, Phase::RequestHeaders | Phase::RequestBody) => {
                self.request_dirty = true;
                Some(&mut self.request)
            }
            (MAP_RESPONSE_HEADERS, Phase::ResponseHeaders) => Some(&mut self.response),
            _ => None,
        }
    }
}

/// Why the host trapped a call: the module broke the ABI (a metric label).
#[derive(Debug)]
pub struct Abuse(pub &'static str);

impl fmt::Display for Abuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl wasmi::errors::HostError for Abuse {}

fn abuse(why: &'static str) -> Error {
    Error::host(Abuse(why))
}

/// Largest single piece of data a filter may hand the host (a header, a body, a log line).
const MAX_PIECE: usize = 1 << 20;

/// `memory[ptr..ptr+len]`, copied out; traps on anything out of bounds.
fn read(c: &Caller<'_, Host>, ptr: i32, len: i32) -> Result<Vec<u8>, Error> {
    let mem = c
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| abuse("no_memory"))?;
    let (p, l) = (ptr as u32 as usize, len as u32 as usize);
    if l > MAX_PIECE {
        return Err(abuse("too_large"));
    }
    let data = mem.data(c);
    let end = p
        .checked_add(l)
        .filter(|&e| e <= data.len())
        .ok_or_else(|| abuse("out_of_bounds"))?;
    Ok(data[p..end].to_vec())
}

/// Writes `bytes` at `ptr`; traps on anything out of bounds.
fn write(c: &mut Caller<'_, Host>, ptr: i32, bytes: &[u8]) -> Result<(), Error> {
    let mem = c
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| abuse("no_memory"))?;
    let p = ptr as u32 as usize;
    let data = mem.data_mut(c);
    let end = p
        .checked_add(bytes.len())
        .filter(|&e| e <= data.len())
        .ok_or_else(|| abuse("out_of_bounds"))?;
    data[p..end].copy_from_slice(bytes);
    Ok(())
}

fn write_u32(c: &mut Caller<'_, Host>, ptr: i32, v: u32) -> Result<(), Error> {
    write(c, ptr, &v.to_le_bytes())
}

/// Copies `data` into memory the module allocates (`proxy_on_memory_allocate`, else
/// `malloc`) and stores its address and length at `ret_ptr` / `ret_len`.
fn hand_over(
    c: &mut Caller<'_, Host>,
    data: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> Result<(), Error> {
    let len = u32::try_from(data.len()).map_err(|_| abuse("too_large"))?;
    let ptr = if data.is_empty() {
        0
    } else {
        let alloc = c
            .get_export("proxy_on_memory_allocate")
            .or_else(|| c.get_export("malloc"))
            .and_then(Extern::into_func)
            .ok_or_else(|| abuse("no_allocator"))?
            .typed::<i32, i32>(&*c)
            .map_err(|_| abuse("bad_allocator"))?;
        let ptr = alloc.call(&mut *c, len as i32)?;
        write(c, ptr, data)?;
        ptr
    };
    write_u32(c, ret_ptr, ptr as u32)?;
    write_u32(c, ret_len, len)
}

/// The ABI's serialized map: count, then (name length, value length) pairs, then each name
/// and value followed by a NUL.
pub fn serialize_map(map: &HeaderMap) -> Vec<u8> {
    let size: usize = map.iter().map(|(n, v)| n.len() + v.len() + 10).sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (n, v) in map {
        out.extend_from_slice(&(n.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (n, v) in map {
        out.extend_from_slice(n);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Parses a serialized map; `None` if it is malformed.
fn parse_map(bytes: &[u8]) -> Option<HeaderMap> {
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let n = u32_at(0)?;
    // Each pair needs at least 10 bytes: a bogus count cannot reserve much.
    if n > bytes.len() / 8 {
        return None;
    }
    let mut at = 4 + n * 8;
    let mut map = Vec::with_capacity(n);
    for i in 0..n {
        let nl = u32_at(4 + i * 8)?;
        let vl = u32_at(8 + i * 8)?;
        let name = bytes.get(at..at.checked_add(nl)?)?.to_vec();
        at += nl + 1;
        let value = bytes.get(at..at.checked_add(vl)?)?.to_vec();
        at += vl + 1;
        map.push((name, value));
    }
    (at <= bytes.len()).then_some(map)
}

/// A header name a filter may write: a lowercase token (or a pseudo-header, checked by the
/// caller), not a framing, hop-by-hop or `host` field.
fn writable_name(name: &[u8]) -> bool {
    let lower_token = !name.is_empty()
        && name
            .iter()
            .all(|&b| http1::is_tchar(b) && !b.is_ascii_uppercase());
    lower_token && !http1::is_hop_by_hop(name) && name != b"content-length" && name != b"host"
}

/// Whether a filter may set `name` to `value`: `:path` (origin-form, checked again where it is
/// used) is the only pseudo-header it may change (`:status` is read-only: the response's
/// framing was decided with it).
fn writable(name: &[u8], value: &[u8]) -> bool {
    match name {
        b":path" => value.first() == Some(&b'/') && http1::is_safe_header_value(value),
        _ => writable_name(name) && http1::is_safe_header_value(value),
    }
}

type C<'a> = Caller<'a, Host>;
type R = Result<i32, Error>;

/// The host functions of ABI 0.2.1 this gateway provides, plus stubs for every other function
/// `module` imports. `Err` names an import that cannot be stubbed (not a function).
pub fn linker(engine: &wasmi::Engine, module: &Module) -> Result<Linker<Host>, String> {
    let mut l = Linker::<Host>::new(engine);
    define(&mut l).map_err(|e| e.to_string())?;
    let mut provided: Vec<String> = Vec::new();
    for name in PROVIDED {
        provided.push(format!("env.{name}"));
    }
    for imp in module.imports() {
        let key = format!("{}.{}", imp.module(), imp.name());
        if provided.contains(&key) {
            continue;
        }
        let Some(ty) = imp.ty().func().cloned() else {
            return Err(format!(
                "imports {key}, which is not a function the host can provide"
            ));
        };
        let answer = if imp.module() == "env" {
            status::UNIMPLEMENTED
        } else {
            // WASI: ENOSYS.
            52
        };
        let exit = imp.name() == "proc_exit";
        stub(&mut l, imp.module(), imp.name(), ty, answer, exit).map_err(|e| e.to_string())?;
        provided.push(key);
    }
    Ok(l)
}

fn stub(
    l: &mut Linker<Host>,
    module: &str,
    name: &str,
    ty: FuncType,
    answer: i32,
    exit: bool,
) -> Result<(), wasmi::errors::LinkerError> {
    let results: Vec<ValType> = ty.results().to_vec();
    l.func_new(module, name, ty, move |_c, _params, out| {
        if exit {
            return Err(abuse("proc_exit"));
        }
        for (slot, t) in out.iter_mut().zip(&results) {
            *slot = match t {
                ValType::I32 => Val::I32(answer),
                ValType::I64 => Val::I64(0),
                ValType::F32 => Val::F32(0f32.into()),
                ValType::F64 => Val::F64(0f64.into()),
                _ => return Err(abuse("unsupported_import")),
            };
        }
        Ok(())
    })?;
    Ok(())
}

/// The functions `define` provides (under `env`).
const PROVIDED: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_get_buffer_bytes",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_size",
    "proxy_get_header_map_value",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_get_property",
    "proxy_send_local_response",
    "proxy_set_effective_context",
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_continue_stream",
    "proxy_clear_route_cache",
];

fn define(l: &mut Linker<Host>) -> Result<(), wasmi::errors::LinkerError> {
    l.func_wrap(
        "env",
        "proxy_log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> R {
            let mut msg = read(&c, ptr, len)?;
            if c.data().logs_left == 0 {
                return Ok(status::OK);
            }
            c.data_mut().logs_left -= 1;
            msg.truncate(LOG_LINE_MAX);
            let text = format!(
                "wasm policy {}: {}",
                c.data().plugin.name,
                String::from_utf8_lossy(&msg).escape_debug()
            );
            // Trace and debug are dropped (`proxy_get_log_level` says info).
            match level {
                2 => crate::log::info(&text),
                3 => crate::log::warn(&text),
                l if l >= 4 => crate::log::error(&text),
                _ => {}
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut c: C<'_>, ret: i32| -> R {
            write_u32(&mut c, ret, 2)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut c: C<'_>, ret: i32| -> R {
            let ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            write(&mut c, ret, &ns.to_le_bytes())?;
            Ok(status::OK)
        },
    )?;
    // Accepted, never fires: filters that set a period at start still run.
    l.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |_: C<'_>, _: i32| -> R { Ok(status::OK) },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut c: C<'_>, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_len: i32| -> R {
            let h = c.data();
            let buf: &[u8] = match kind {
                BUFFER_PLUGIN_CONFIGURATION => &h.plugin.configuration,
                BUFFER_VM_CONFIGURATION => &[],
                BUFFER_REQUEST_BODY if h.phase == Phase::RequestBody => &h.body,
                _ => return Ok(status::NOT_FOUND),
            };
            let (start, max) = (start as u32 as usize, max as u32 as usize);
            let Some(rest) = buf.get(start..) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let piece = rest[..rest.len().min(max)].to_vec();
            hand_over(&mut c, &piece, ret_ptr, ret_len)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut c: C<'_>, map: i32, ret_ptr: i32, ret_len: i32| -> R {
            let Some(m) = c.data().map(map) else {
                return Ok(status::NOT_FOUND);
            };
            let bytes = serialize_map(m);
            hand_over(&mut c, &bytes, ret_ptr, ret_len)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_size",
        |mut c: C<'_>, map: i32, ret: i32| -> R {
            let Some(m) = c.data().map(map) else {
                return Ok(status::NOT_FOUND);
            };
            let size = serialize_map(m).len() as u32;
            write_u32(&mut c, ret, size)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut c: C<'_>, map: i32, ptr: i32, len: i32| -> R {
            let bytes = read(&c, ptr, len)?;
            let Some(new) = parse_map(&bytes).filter(|m| m.len() <= MAP_MAX) else {
                return Ok(status::BAD_ARGUMENT);
            };
            let Some(m) = c.data_mut().map_mut(map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            // Pseudo-headers keep their place (and, unless writable, their values); a field
            // the map already holds as given may stay even if the filter could not write it
            // (a `content-length` on a response without a body, a client's long value).
            let mut out: HeaderMap = m
                .iter()
                .filter(|(n, _)| n.first() == Some(&b':'))
                .cloned()
                .collect();
            for (n, v) in new {
                let n = n.to_ascii_lowercase();
                let kept = m.iter().any(|(o, ov)| *o == n && *ov == v);
                if n.first() == Some(&b':') {
                    if !kept && !writable(&n, &v) {
                        return Ok(status::BAD_ARGUMENT);
                    }
                    if let Some(slot) = out.iter_mut().find(|(o, _)| *o == n) {
                        slot.1 = v;
                    }
                } else if kept || writable(&n, &v) {
                    out.push((n, v));
                } else {
                    return Ok(status::BAD_ARGUMENT);
                }
            }
            *m = out;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut c: C<'_>, map: i32, kp: i32, kl: i32, ret_ptr: i32, ret_len: i32| -> R {
            let key = read(&c, kp, kl)?.to_ascii_lowercase();
            let Some(m) = c.data().map(map) else {
                return Ok(status::NOT_FOUND);
            };
            // Several fields of one name read as one value, joined as HTTP allows.
            let mut value: Option<Vec<u8>> = None;
            for (n, v) in m {
                if *n == key {
                    match &mut value {
                        Some(acc) => {
                            acc.extend_from_slice(b", ");
                            acc.extend_from_slice(v);
                        }
                        None => value = Some(v.clone()),
                    }
                }
            }
            let Some(value) = value else {
                return Ok(status::NOT_FOUND);
            };
            hand_over(&mut c, &value, ret_ptr, ret_len)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |mut c: C<'_>, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> R {
            let key = read(&c, kp, kl)?.to_ascii_lowercase();
            let value = read(&c, vp, vl)?;
            if key.first() == Some(&b':') || !writable(&key, &value) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(m) = c.data_mut().map_mut(map).filter(|m| m.len() < MAP_MAX) else {
                return Ok(status::BAD_ARGUMENT);
            };
            m.push((key, value));
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |mut c: C<'_>, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> R {
            let key = read(&c, kp, kl)?.to_ascii_lowercase();
            let value = read(&c, vp, vl)?;
            if !writable(&key, &value) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(m) = c.data_mut().map_mut(map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            match m.iter().position(|(n, _)| *n == key) {
                Some(i) => {
                    m[i].1 = value;
                    let mut j = i + 1;
                    while j < m.len() {
                        if m[j].0 == key {
                            m.remove(j);
                        } else {
                            j += 1;
                        }
                    }
                }
                None if key.first() == Some(&b':') || m.len() >= MAP_MAX => {
                    return Ok(status::BAD_ARGUMENT)
                }
                None => m.push((key, value)),
            }
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut c: C<'_>, map: i32, kp: i32, kl: i32| -> R {
            let key = read(&c, kp, kl)?.to_ascii_lowercase();
            if key.first() == Some(&b':') || !writable_name(&key) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Some(m) = c.data_mut().map_mut(map) else {
                return Ok(status::BAD_ARGUMENT);
            };
            m.retain(|(n, _)| *n != key);
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_get_property",
        |mut c: C<'_>, pp: i32, pl: i32, ret_ptr: i32, ret_len: i32| -> R {
            let path = read(&c, pp, pl)?;
            let Some(value) = property(c.data(), &path) else {
                return Ok(status::NOT_FOUND);
            };
            hand_over(&mut c, &value, ret_ptr, ret_len)?;
            Ok(status::OK)
        },
    )?;
    l.func_wrap(
        "env",
        "proxy_send_local_response",
        |mut c: C<'_>,
         code: i32,
         _dp: i32,
         _dl: i32,
         bp: i32,
         bl: i32,
         hp: i32,
         hl: i32,
         _grpc: i32|
         -> R {
            if !matches!(c.data().phase, Phase::RequestHeaders | Phase::RequestBody) {
                return Ok(status::BAD_ARGUMENT);
            }
            let Ok(status) = u16::try_from(code) else {
                return Ok(status::BAD_ARGUMENT);
            };
            if !(200..=599).contains(&status) {
                return Ok(status::BAD_ARGUMENT);
            }
            let mut body = read(&c, bp, bl)?;
            if matches!(status, 204 | 205 | 304) {
                // These statuses carry no body (RFC 9110 §15.3.5, §15.3.6, §15.4.5).
                body.clear();
            }
            let raw = read(&c, hp, hl)?;
            let headers = if raw.is_empty() {
                Vec::new()
            } else {
                match parse_map(&raw) {
                    Some(h) => h,
                    None => return Ok(status::BAD_ARGUMENT),
                }
            };
            let mut clean = Vec::with_capacity(headers.len());
            for (n, v) in headers {
                let n = n.to_ascii_lowercase();
                if n.first() == Some(&b':') || !writable(&n, &v) || n == b"transfer-encoding" {
                    return Ok(status::BAD_ARGUMENT);
                }
                clean.push((n, v));
            }
            c.data_mut().local = Some(Local {
                status,
                headers: clean,
                body,
            });
            Ok(status::OK)
        },
    )?;
    // One filter per store: every context is this module's, nothing to switch.
    l.func_wrap(
        "env",
        "proxy_set_effective_context",
        |_: C<'_>, _: i32| -> R { Ok(status::OK) },
    )?;
    // Requests never pause (see `filter`), so continuing is a no-op.
    l.func_wrap("env", "proxy_continue_request", |_: C<'_>| -> R {
        Ok(status::OK)
    })?;
    l.func_wrap("env", "proxy_continue_response", |_: C<'_>| -> R {
        Ok(status::OK)
    })?;
    l.func_wrap("env", "proxy_continue_stream", |_: C<'_>, _: i32| -> R {
        Ok(status::OK)
    })?;
    l.func_wrap("env", "proxy_clear_route_cache", |_: C<'_>| -> R {
        Ok(status::OK)
    })?;
    Ok(())
}

/// `proxy_get_property`: a path of NUL-separated segments (`request\0path`).
fn property(h: &Host, path: &[u8]) -> Option<Vec<u8>> {
    let segs: Vec<&[u8]> = path.split(|&b| b == 0).filter(|s| !s.is_empty()).collect();
    let pseudo = |name: &[u8]| {
        h.request
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    match segs.as_slice() {
        [b"request", b"path"] => pseudo(b":path"),
        [b"request", b"url_path"] => {
            pseudo(b":path").map(|p| p.split(|&b| b == b'?').next().unwrap_or(&[]).to_vec())
        }
        [b"request", b"method"] => pseudo(b":method"),
        [b"request", b"host"] => pseudo(b":authority"),
        [b"request", b"scheme"] => pseudo(b":scheme"),
        [b"plugin_name"] => Some(h.plugin.name.as_bytes().to_vec()),
        [b"response", b"code"] if h.phase == Phase::ResponseHeaders => pseudo_resp(h),
        [first, rest @ ..] => {
            let mut dotted = first.to_vec();
            for r in rest {
                dotted.push(b'.');
                dotted.extend_from_slice(r);
            }
            h.props
                .iter()
                .find(|(k, _)| k.as_bytes() == dotted)
                .map(|(_, v)| v.clone())
        }
        [] => None,
    }
}

fn pseudo_resp(h: &Host) -> Option<Vec<u8>> {
    h.response
        .iter()
        .find(|(n, _)| n == b":status")
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip_and_refuse_garbage() {
        let m: HeaderMap = vec![(b"a".to_vec(), b"1".to_vec()), (b"bb".to_vec(), Vec::new())];
        assert_eq!(parse_map(&serialize_map(&m)), Some(m));
        assert_eq!(parse_map(&[0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(parse_map(&[1, 0, 0, 0, 9, 0, 0, 0, 9, 0, 0, 0, b'a']), None);
        assert_eq!(parse_map(&[]), None);
    }

    #[test]
    fn only_safe_fields_are_writable() {
        assert!(writable(b"x-a", b"v"));
        assert!(!writable(b"X-A", b"v"));
        assert!(!writable(b"content-length", b"1"));
        assert!(!writable(b"transfer-encoding", b"chunked"));
        assert!(!writable(b"x-a", b"v\r\nx: y"));
        assert!(writable(b":path", b"/a?b"));
        assert!(!writable(b":path", b"a"));
        assert!(!writable(b":method", b"GET"));
    }
}
