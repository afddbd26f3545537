//! Custom policies as proxy-wasm filters (ABI 0.2.1, the one Envoy, Kong and APISIX share):
//! `[policies.NAME.wasm]`, compiled once per config generation into a `wasmi::Module`
//! (`compile`, producing a `compiled::Filter`); each worker instantiates it lazily and keeps it (`instance::Instances`, held
//! by `Core`); `filter.rs` runs a request's callbacks, `host.rs` is the ABI's host side.
//!
//! Why wasmi (an interpreter) and not wasmtime: it builds in seconds rather than minutes on
//! the 2-core machines the test suite must finish on, has fuel metering and a store limiter,
//! and an empty filter's cost is dominated by the host calls anyway.
//!
//! Invariants: a module that does not compile, link, start or accept its configuration is a
//! config error naming its file (checked by a trial instance at compile time, bounded by fuel);
//! every call into a module runs with `fuel` fresh units and memory capped at `max_memory`; a
//! trap discards that worker's instance (the next request makes a new one) and never reaches
//! anything but the request that ran it.

pub mod compiled;
pub mod filter;
pub mod host;
pub mod instance;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use wasmi::{Engine, Module};

use crate::config::errors::Fail;
use crate::config::units::RawSize;

pub use compiled::Filter;
pub use instance::{Instances, Pending};

/// Fuel per call when the config sets none (a few milliseconds of interpretation).
pub const DEFAULT_FUEL: u64 = 1_000_000;
/// Linear memory cap when the config sets none.
pub const DEFAULT_MAX_MEMORY: u64 = 16 << 20;
/// Largest `body_bytes` (the body prefix is buffered in the gateway and copied into the filter).
const MAX_BODY_BYTES: u64 = 1 << 20;

/// `[policies.NAME.wasm]`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWasm {
    /// The module file (`.wasm` binary or `.wat` text), relative to the config file.
    #[schemars(with = "Option<String>")]
    pub module: Option<Spanned<String>>,
    /// Handed to `proxy_on_configure` as the plugin configuration buffer.
    pub configuration: Option<String>,
    /// Fuel (roughly, instructions) each call into the filter may use (default 1000000).
    #[schemars(with = "Option<i64>")]
    pub fuel: Option<Spanned<i64>>,
    /// Cap on the filter's linear memory (default 16MiB).
    #[schemars(with = "Option<RawSize>")]
    pub max_memory: Option<Spanned<RawSize>>,
    /// Request body bytes buffered for `proxy_on_request_body` (default 0: no body callback;
    /// at most 1MiB).
    #[schemars(with = "Option<RawSize>")]
    pub body_bytes: Option<Spanned<RawSize>>,
}

/// The compiled policy.
pub struct WasmPolicy {
    /// Request body bytes the filter sees (0: none).
    pub body_bytes: usize,
    pub filter: Arc<Filter>,
}

impl std::fmt::Debug for WasmPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPolicy")
            .field("name", &self.filter.plugin.name)
            .field("body_bytes", &self.body_bytes)
            .finish()
    }
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// One engine for every filter: fuel metering on, deterministic limits.
fn engine() -> &'static Engine {
    static ENGINE: std::sync::OnceLock<Engine> = std::sync::OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut c = wasmi::Config::default();
        c.consume_fuel(true);
        // A filter recursing without end traps instead of growing the worker's stack.
        c.set_max_recursion_depth(1024);
        Engine::new(&c)
    })
}

/// Exports a filter may have, and the signatures the ABI gives them (params, results).
const CALLBACKS: &[(&str, usize, usize)] = &[
    ("proxy_on_memory_allocate", 1, 1),
    ("malloc", 1, 1),
    ("proxy_on_context_create", 2, 0),
    ("proxy_on_vm_start", 2, 1),
    ("proxy_on_configure", 2, 1),
    ("proxy_on_request_headers", 3, 1),
    ("proxy_on_request_body", 3, 1),
    ("proxy_on_response_headers", 3, 1),
    ("proxy_on_done", 1, 1),
    ("proxy_on_log", 1, 0),
    ("_initialize", 0, 0),
    ("_start", 0, 0),
    ("proxy_on_delete", 1, 0),
];

/// Compiles the policy named `name`. Errors go to `fail`.
pub fn compile(
    name: &str,
    raw: &RawWasm,
    span: std::ops::Range<usize>,
    base_dir: &Path,
    fail: &mut Fail<'_>,
) -> Option<WasmPolicy> {
    let Some(module) = &raw.module else {
        fail(
            span,
            "module",
            "the filter's module file is required".into(),
        );
        return None;
    };
    let fuel = match &raw.fuel {
        None => DEFAULT_FUEL,
        Some(f) if *f.get_ref() > 0 => *f.get_ref() as u64,
        Some(f) => {
            fail(f.span(), "fuel", "must be a positive number".into());
            return None;
        }
    };
    let max_memory = raw
        .max_memory
        .as_ref()
        .map_or(DEFAULT_MAX_MEMORY, |m| m.get_ref().0);
    if !(64 << 10..=1 << 30).contains(&max_memory) {
        let at = raw.max_memory.as_ref().map_or(span.clone(), Spanned::span);
        fail(at, "max_memory", "must be between 64KiB and 1GiB".into());
        return None;
    }
    let body_bytes = raw.body_bytes.as_ref().map_or(0, |b| b.get_ref().0);
    if body_bytes > MAX_BODY_BYTES {
        let at = raw.body_bytes.as_ref().map_or(span.clone(), Spanned::span);
        fail(at, "body_bytes", "must be at most 1MiB".into());
        return None;
    }
    let path = base_dir.join(module.get_ref());
    let shown = path.display().to_string();
    let mut refuse = |msg: String| fail(module.span(), "module", format!("{shown}: {msg}"));
    let bytes = match crate::bounded_file::read(&path, crate::bounded_file::MAX_MODULE_BYTES) {
        Ok(b) => b,
        Err(e) => {
            refuse(format!("cannot read the module: {e}"));
            return None;
        }
    };
    let plugin = Arc::new(host::Plugin {
        name: name.to_string(),
        configuration: raw.configuration.clone().unwrap_or_default().into_bytes(),
    });
    match load(&bytes, plugin, fuel, max_memory as usize) {
        Ok(filter) => Some(WasmPolicy {
            body_bytes: body_bytes as usize,
            filter: Arc::new(filter),
        }),
        Err(msg) => {
            refuse(msg);
            None
        }
    }
}

/// Compiles, links and checks a module (binary or text), then starts a trial instance so a
/// filter that fails to start or refuses its configuration is refused here, not per request.
pub fn load(
    bytes: &[u8],
    plugin: Arc<host::Plugin>,
    fuel: u64,
    max_memory: usize,
) -> Result<Filter, String> {
    let module = Module::new(engine(), bytes).map_err(|e| format!("not a valid module: {e}"))?;
    let abi = ["proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0"]
        .iter()
        .any(|n| module.get_export(n).is_some());
    if !abi {
        return Err(
            "not a proxy-wasm module: it exports neither proxy_abi_version_0_2_1 \
                    nor proxy_abi_version_0_2_0"
                .into(),
        );
    }
    match module
        .get_export("memory")
        .as_ref()
        .and_then(|t| t.memory())
    {
        None => return Err("exports no memory".into()),
        Some(m) => {
            let initial = m.minimum().saturating_mul(64 << 10);
            if initial > max_memory as u64 {
                return Err(format!(
                    "its memory starts at {initial} bytes, more than max_memory ({max_memory})"
                ));
            }
        }
    }
    if module.get_export("proxy_on_memory_allocate").is_none()
        && module.get_export("malloc").is_none()
    {
        return Err("exports neither proxy_on_memory_allocate nor malloc".into());
    }
    for (name, params, results) in CALLBACKS {
        let Some(ty) = module.get_export(name) else {
            continue;
        };
        let ok = ty.func().is_some_and(|f| {
            f.params().len() == *params
                && f.results().len() == *results
                && f.params()
                    .iter()
                    .chain(f.results())
                    .all(|t| *t == wasmi::ValType::I32)
        });
        if !ok {
            return Err(format!(
                "export {name} does not have the ABI's signature ({params} i32 parameters, \
                 {results} i32 results)"
            ));
        }
    }
    let linker = host::linker(engine(), &module)?;
    let response_hook = module.get_export("proxy_on_response_headers").is_some();
    let filter = Filter {
        uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
        module,
        linker,
        plugin,
        fuel,
        max_memory,
        response_hook,
    };
    instance::Live::start(&filter).map_err(|why| format!("the filter failed to start: {why}"))?;
    Ok(filter)
}
