//! What one compile of a filter module holds (`Filter`): the module, its linker and plugin
//! settings, shared by every worker's instances of it. Kept apart from `mod.rs` so the
//! instances can name it without depending on the compile.

use std::sync::Arc;

use wasmi::{Linker, Module};

use super::host;

/// What one compile of a filter holds, shared by every worker's instances.
pub struct Filter {
    /// Unique per compile: instances are keyed by it, so a reload gets fresh ones.
    pub uid: u64,
    pub module: Module,
    pub linker: Linker<host::Host>,
    pub plugin: Arc<host::Plugin>,
    pub fuel: u64,
    pub max_memory: usize,
    /// The module exports `proxy_on_response_headers`: the context lives until the response.
    pub response_hook: bool,
}
