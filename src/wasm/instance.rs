//! A worker's filter instances (`Instances`, held by `Core`: no lock, nothing shared between
//! workers), one live instance's callbacks (`Live`), and the request contexts kept open until
//! the response head (`Pending`, carried in `Effects::wasm`).
//!
//! Lifecycle: an instance is made on a worker's first request through the policy and runs
//! `proxy_on_vm_start` and `proxy_on_configure` (root context 1). Each request gets a fresh
//! context id: `proxy_on_context_create`, the request callbacks, `proxy_on_response_headers`
//! when the module exports it, then `proxy_on_done`, `proxy_on_log`, `proxy_on_delete` (also
//! when the request ends any other way: `Pending` finishes its contexts when dropped). A call that traps
//! (fuel, memory, a bad pointer) discards the instance; contexts it held die with it.
//! A new config generation drops the worker's map, so reloaded modules start fresh.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use wasmi::{Instance, Store, TypedFunc, WasmParams, WasmResults};

use super::compiled::Filter;
use super::host::{self, HeaderMap, Host, Local, Phase, Props};

/// The root context's id (one per instance).
const ROOT: i32 = 1;

/// Why a call into a filter failed: a metric label and a line for the log.
#[derive(Debug)]
pub struct Failure {
    pub reason: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.reason)
    }
}

impl Failure {
    fn from_error(e: wasmi::Error) -> Failure {
        let reason = if let Some(a) = e.downcast_ref::<host::Abuse>() {
            a.0
        } else {
            match e.as_trap_code() {
                Some(wasmi::TrapCode::OutOfFuel) => "fuel",
                Some(wasmi::TrapCode::StackOverflow) => "stack",
                Some(wasmi::TrapCode::MemoryOutOfBounds) => "memory",
                Some(wasmi::TrapCode::GrowthOperationLimited) => "memory_limit",
                _ => "trap",
            }
        };
        Failure {
            reason,
            detail: e.to_string(),
        }
    }

    fn new(reason: &'static str, detail: &str) -> Failure {
        Failure {
            reason,
            detail: detail.to_string(),
        }
    }
}

type Cb3 = TypedFunc<(i32, i32, i32), i32>;

/// The callbacks a module exports (checked against the ABI's signatures at compile).
struct Fns {
    context_create: Option<TypedFunc<(i32, i32), ()>>,
    request_headers: Option<Cb3>,
    request_body: Option<Cb3>,
    response_headers: Option<Cb3>,
    done: Option<TypedFunc<i32, i32>>,
    log: Option<TypedFunc<i32, ()>>,
    delete: Option<TypedFunc<i32, ()>>,
}

/// One instance of a filter on this worker.
pub struct Live {
    /// Unique per instance, so a context is only ever closed on the instance that opened it.
    serial: u64,
    store: Store<Host>,
    fns: Fns,
    fuel: u64,
    next_ctx: i32,
}

/// What the request callbacks decided.
pub struct RequestOutcome {
    /// The context, still open when the filter has a response hook (and no local reply).
    pub ctx: i32,
    /// The request header map as the filter left it.
    pub headers: HeaderMap,
    /// The filter may have changed `headers` (it called a function that writes the map).
    pub dirty: bool,
    /// The request's facts, handed back for the response callback.
    pub props: Props,
    /// The answer the filter chose instead of forwarding.
    pub local: Option<Local>,
}

impl Live {
    /// Instantiates `f` and runs its start and configuration callbacks.
    pub fn start(f: &Filter) -> Result<Live, Failure> {
        let mut store = Store::new(f.module.engine(), Host::new(f.plugin.clone(), f.max_memory));
        store.limiter(|h| &mut h.limits);
        store
            .set_fuel(f.fuel)
            .map_err(|e| Failure::new("start", &e.to_string()))?;
        let inst = f
            .linker
            .instantiate_and_start(&mut store, &f.module)
            .map_err(Failure::from_error)?;
        let fns = Fns {
            context_create: typed(&inst, &store, "proxy_on_context_create"),
            request_headers: typed(&inst, &store, "proxy_on_request_headers"),
            request_body: typed(&inst, &store, "proxy_on_request_body"),
            response_headers: typed(&inst, &store, "proxy_on_response_headers"),
            done: typed(&inst, &store, "proxy_on_done"),
            log: typed(&inst, &store, "proxy_on_log"),
            delete: typed(&inst, &store, "proxy_on_delete"),
        };
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let mut live = Live {
            serial: SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            store,
            fns,
            fuel: f.fuel,
            next_ctx: ROOT + 1,
        };
        // A WASI reactor's constructors, else a command's entry (which returns for filters).
        let init = typed::<(), ()>(&inst, &live.store, "_initialize")
            .or_else(|| typed::<(), ()>(&inst, &live.store, "_start"));
        if let Some(init) = init {
            live.run(init, ())?;
        }
        if let Some(cc) = live.fns.context_create {
            live.run(cc, (ROOT, 0))?;
        }
        if let Some(vm) = typed::<(i32, i32), i32>(&inst, &live.store, "proxy_on_vm_start") {
            if live.run(vm, (ROOT, 0))? == 0 {
                return Err(Failure::new("start", "proxy_on_vm_start returned false"));
            }
        }
        if let Some(cf) = typed::<(i32, i32), i32>(&inst, &live.store, "proxy_on_configure") {
            let size = f.plugin.configuration.len() as i32;
            if live.run(cf, (ROOT, size))? == 0 {
                return Err(Failure::new(
                    "configure",
                    "proxy_on_configure refused the configuration",
                ));
            }
        }
        Ok(live)
    }

    /// Calls `f` with a fresh allowance of fuel.
    fn run<P: WasmParams, R: WasmResults>(
        &mut self,
        f: TypedFunc<P, R>,
        args: P,
    ) -> Result<R, Failure> {
        self.store
            .set_fuel(self.fuel)
            .map_err(|e| Failure::new("fuel", &e.to_string()))?;
        self.store.data_mut().logs_left = host::LOGS_PER_CALL;
        f.call(&mut self.store, args).map_err(Failure::from_error)
    }

    /// Opens a context and runs the request callbacks: headers (`end_of_stream` when the
    /// request has no body), then the body prefix if `body` is given and the module has the
    /// callback. A filter that pauses at its last callback fails: nothing would resume it.
    pub fn request(
        &mut self,
        headers: HeaderMap,
        props: Props,
        end_of_stream: bool,
        body: Option<(&[u8], bool)>,
    ) -> Result<RequestOutcome, Failure> {
        let ctx = self.next_ctx;
        self.next_ctx = if ctx >= i32::MAX - 1 {
            ROOT + 1
        } else {
            ctx + 1
        };
        if let Some(cc) = self.fns.context_create {
            self.run(cc, (ctx, ROOT))?;
        }
        let h = self.store.data_mut();
        h.phase = Phase::RequestHeaders;
        h.local = None;
        h.request_dirty = false;
        h.props = props;
        let n = headers.len() as i32;
        h.request = headers;
        let mut paused = false;
        if let Some(rh) = self.fns.request_headers {
            paused = self.run(rh, (ctx, n, i32::from(end_of_stream)))? == 1;
        }
        if let (Some((bytes, complete)), Some(rb)) = (body, self.fns.request_body) {
            if self.store.data().local.is_none() {
                let h = self.store.data_mut();
                h.phase = Phase::RequestBody;
                h.body = bytes.to_vec();
                paused = self.run(rb, (ctx, bytes.len() as i32, i32::from(complete)))? == 1;
                self.store.data_mut().body = Vec::new();
            }
        }
        let h = self.store.data_mut();
        h.phase = Phase::Root;
        let headers = std::mem::take(&mut h.request);
        let dirty = h.request_dirty;
        let props = std::mem::take(&mut h.props);
        let local = h.local.take();
        if paused && local.is_none() {
            return Err(Failure::new(
                "paused",
                "the filter paused the request; ringway has nothing that would resume it",
            ));
        }
        Ok(RequestOutcome {
            ctx,
            headers,
            dirty,
            props,
            local,
        })
    }

    /// `proxy_on_response_headers` for `ctx` over `map` (`:status` first), with the request's
    /// map readable; the response map as the filter left it.
    fn response(
        &mut self,
        ctx: i32,
        request: &mut HeaderMap,
        props: &mut Props,
        map: HeaderMap,
        end_of_stream: bool,
    ) -> Result<HeaderMap, Failure> {
        let Some(rh) = self.fns.response_headers else {
            return Ok(map);
        };
        let h = self.store.data_mut();
        h.phase = Phase::ResponseHeaders;
        let n = map.len() as i32;
        h.response = map;
        h.request = std::mem::take(request);
        h.props = std::mem::take(props);
        let r = self.run(rh, (ctx, n, i32::from(end_of_stream)));
        let h = self.store.data_mut();
        h.phase = Phase::Root;
        h.local = None;
        *request = std::mem::take(&mut h.request);
        *props = std::mem::take(&mut h.props);
        let map = std::mem::take(&mut h.response);
        r.map(|_| map)
    }

    /// `proxy_on_done`, `proxy_on_log` and `proxy_on_delete` for `ctx`.
    pub fn finish(&mut self, ctx: i32) -> Result<(), Failure> {
        if let Some(d) = self.fns.done {
            self.run(d, ctx)?;
        }
        if let Some(l) = self.fns.log {
            self.run(l, ctx)?;
        }
        if let Some(d) = self.fns.delete {
            self.run(d, ctx)?;
        }
        Ok(())
    }
}

fn typed<P: WasmParams, R: WasmResults>(
    inst: &Instance,
    store: &Store<Host>,
    name: &str,
) -> Option<TypedFunc<P, R>> {
    inst.get_typed_func::<P, R>(store, name).ok()
}

/// One filter's instance on this worker; `None` after a trap (made again on next use).
pub struct Slot {
    pub filter: Arc<Filter>,
    pub live: RefCell<Option<Live>>,
}

impl Slot {
    /// Records a failed call: the metric, a log line, and the instance discarded.
    pub fn failed(&self, f: &Failure) {
        *self.live.borrow_mut() = None;
        report(&self.filter, f);
    }
}

/// Counts and logs a failure of `filter`.
pub fn report(filter: &Filter, f: &Failure) {
    crate::metrics::wasm::failure(&filter.plugin.name, f.reason);
    crate::log::warn(&format!(
        "wasm policy {}: the filter failed: {f}; the request got a 500 and the instance was \
         discarded",
        filter.plugin.name
    ));
}

/// This worker's instances, by filter compile (`Filter::uid`).
#[derive(Default)]
pub struct Instances {
    generation: Cell<u64>,
    slots: RefCell<Vec<(u64, Rc<Slot>)>>,
}

impl Instances {
    /// The slot of `filter` on this worker, with a live instance (made now if needed).
    /// `generation` is the config generation the request runs against: a newer one drops the
    /// previous generations' instances (requests still holding theirs finish on them).
    pub fn get(&self, filter: &Arc<Filter>, generation: u64) -> Result<Rc<Slot>, Failure> {
        // Only a newer generation clears: a request still running on the previous one (a
        // long upload during a reload) must not make the two generations evict each other.
        if generation > self.generation.get() {
            self.generation.set(generation);
            self.slots.borrow_mut().clear();
        }
        let found = self
            .slots
            .borrow()
            .iter()
            .find(|(uid, _)| *uid == filter.uid)
            .map(|(_, s)| s.clone());
        let slot = match found {
            Some(s) => s,
            None => {
                let s = Rc::new(Slot {
                    filter: filter.clone(),
                    live: RefCell::new(None),
                });
                self.slots.borrow_mut().push((filter.uid, s.clone()));
                s
            }
        };
        let missing = slot.live.borrow().is_none();
        if missing {
            match Live::start(filter) {
                Ok(live) => *slot.live.borrow_mut() = Some(live),
                Err(f) => {
                    report(filter, &f);
                    return Err(f);
                }
            }
        }
        Ok(slot)
    }
}

/// A request's open filter contexts, waiting for the response head (`Effects::wasm`).
#[derive(Default)]
pub struct Pending {
    hooks: RefCell<Vec<Hook>>,
}

/// One open context: its slot, the instance that opened it, its id, and the request's header
/// map as the filter left it (readable from the response callback).
struct Hook {
    slot: Rc<Slot>,
    serial: u64,
    ctx: i32,
    request: HeaderMap,
    props: Props,
}

impl Pending {
    /// Keeps `ctx` of `slot`'s current instance open until the response (or the end of the
    /// request).
    pub fn push(&self, slot: Rc<Slot>, ctx: i32, request: HeaderMap, props: Props) {
        let serial = slot.live.borrow().as_ref().map_or(0, |l| l.serial);
        self.hooks.borrow_mut().push(Hook {
            slot,
            serial,
            ctx,
            request,
            props,
        });
    }

    /// Runs every open context's `proxy_on_response_headers` over the client's response
    /// fields (`name: value\r\n` lines, rewritten in place with the filters' edits), then
    /// finishes the contexts. `Err`: a filter failed (counted, logged, instance discarded).
    pub fn response_headers(
        &self,
        status: u16,
        fields: &mut Vec<u8>,
        end_of_stream: bool,
    ) -> Result<(), Failure> {
        let hooks = std::mem::take(&mut *self.hooks.borrow_mut());
        let mut result = Ok(());
        for Hook {
            slot,
            serial,
            ctx,
            mut request,
            mut props,
        } in hooks
        {
            if result.is_err() {
                finish(&slot, serial, ctx);
                continue;
            }
            let mut guard = slot.live.borrow_mut();
            let Some(live) = guard.as_mut().filter(|l| l.serial == serial) else {
                // The instance that holds this request's context was discarded while the
                // request was upstream (another request's failure): the hook cannot run, and
                // an unfiltered head must not reach the client.
                drop(guard);
                let f = Failure::new(
                    "lost",
                    "the instance holding this request's context was discarded while the \
                     request was upstream (another request's filter failed)",
                );
                report(&slot.filter, &f);
                result = Err(f);
                continue;
            };
            let mut map: HeaderMap = vec![(b":status".to_vec(), status.to_string().into_bytes())];
            map.extend(parse_fields(fields));
            let before = map.clone();
            let r = live.response(ctx, &mut request, &mut props, map, end_of_stream);
            let r = r.and_then(|map| live.finish(ctx).map(|()| map));
            drop(guard);
            match r {
                Ok(map) => {
                    if map != before {
                        fields.clear();
                        for (n, v) in map.iter().filter(|(n, _)| n.first() != Some(&b':')) {
                            crate::http1::write_header(fields, n, v);
                        }
                    }
                }
                Err(f) => {
                    slot.failed(&f);
                    result = Err(f);
                }
            }
        }
        result
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        for h in std::mem::take(&mut *self.hooks.borrow_mut()) {
            finish(&h.slot, h.serial, h.ctx);
        }
    }
}

/// Closes `ctx` on the slot's current instance: for callers that opened it with no await
/// since, so it is the same instance.
pub fn close_now(slot: &Slot, ctx: i32) {
    let serial = slot.live.borrow().as_ref().map_or(0, |l| l.serial);
    finish(slot, serial, ctx);
}

/// Closes `ctx` on `slot`'s instance, if it is still the one that opened it.
pub fn finish(slot: &Slot, serial: u64, ctx: i32) {
    let Ok(mut guard) = slot.live.try_borrow_mut() else {
        return;
    };
    let Some(live) = guard.as_mut().filter(|l| l.serial == serial) else {
        return;
    };
    if let Err(f) = live.finish(ctx) {
        *guard = None;
        drop(guard);
        report(&slot.filter, &f);
    }
}

/// `name: value\r\n` lines as a map (names lowercased).
fn parse_fields(fields: &[u8]) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    fields.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii().to_vec();
        Some((name, value))
    })
}
