//! OpenAPI as the contract: `[[openapi]]` blocks import an OpenAPI 3.0 or 3.1 document
//! (YAML or JSON), and everything the gateway does with it grows from one loaded model.
//!
//! Module map:
//! - `model`: the loaded document as ringway sees it: operations with their parameters,
//!   request bodies and security, plus every construct that was ignored (with its JSON
//!   pointer). Plain data, built once per config generation.
//! - `raw`: the `[[openapi]]` config block as written.
//! - `load`: reads the file (YAML or JSON), resolves `$ref`s and builds the model.
//! - `import` (in `config::openapi`): operations become routes with their policies.
//! - `validate`: request validation against the operation's schemas (compiled once per
//!   generation) and the RFC 9457 problem body of a refusal.
//! - `portal`: the developer portal generated from the model (HTML, embedded assets,
//!   self-service keys).
//! - `mcp`: selected operations as MCP tools over the Streamable HTTP transport.

pub mod load;
pub mod mcp;
pub mod model;
pub mod portal;
pub mod raw;
pub mod validate;

pub use model::{Api, Dialect, Operation};
