//! Architecture check: reads every `src/**/*.rs` (except `main.rs`, `lib.rs` and `#[cfg(test)]`
//! code), builds the file-level graph of "uses" edges, and asserts that
//! (a) no two files depend on each other through any chain (no import cycle, counted strictly,
//!     file by file: a `mod.rs` and its own children count like any other files), and
//! (b) at most `MAX_UPWARD` imports point from a lower layer to a higher one, each marked with a
//!     comment containing `layer:` that says why.
//!
//! A file is a module (`src/a/b.rs` and `src/a/b/mod.rs` are both `a::b`). An edge is any path
//! into the crate: `use` trees (brace groups included), inline paths (`crate::log::warn(..)`),
//! `super::`/`self::` paths, paths through child modules (`mod foo;` then `foo::x`) and through
//! names a `use` brought in. A path resolves to the file that *defines* the named item: through
//! the longest prefix that is a file module, then through that file's own `use`/`pub use`
//! bindings (so `crate::config::Compiled` re-exported by `config/mod.rs` from `config/model.rs`
//! is an edge to `config/model.rs`, and a `mod.rs` that only declares and re-exports never
//! closes a cycle with its children). Comments and string literals are blanked out first.
//!
//! Run it with `bash scripts/arch-check.sh` (or `cargo test --test architecture --
//! --include-ignored --nocapture`) to see the whole report: every cycle as a path of modules
//! with the file:line sites that make it, every upward import. `ARCH_SRC=<dir>` checks another
//! `src/` tree; `ARCH_EDGES=<file>` writes the file-level edges (`from -> to`) for other tools.
//!
//! This is a lexical checker, not a compiler: it does not expand macros, and treats an inline
//! `mod x { .. }` (other than `#[cfg(test)]` ones, which are skipped) as part of its file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::Path;

/// The layers, low → high. An import may point to the same or a lower layer only.
///
/// Entries are module-path prefixes; the longest matching prefix wins (`config::errors` is layer
/// 1 although `config` is 3). To place a new module: find the lowest layer whose modules it
/// needs, put it there (or higher if it orchestrates them), and add a line here. A module not
/// covered by any entry fails the test, so nobody forgets. Keep this table in step with the
/// layering in DESIGN.md.
const LAYERS: &[(&str, u8)] = &[
    // 0 base: no crate imports beyond each other.
    ("civil", 0),
    ("json", 0),
    ("keyed_hash", 0),
    // Bounded reads of the regular files a config names (no crate imports).
    ("bounded_file", 0),
    ("io", 0),
    // The coarse clock deadlines come from (no crate imports).
    ("deadline_clock", 0),
    // Deadlines listed with the worker's tick (no crate imports).
    ("deadline", 0),
    ("log", 0),
    // The allocator's quiet-time collection and THP setting (no crate imports).
    ("heap", 0),
    ("privileges", 0),
    ("notify", 0),
    // HTTP/2 frame-rate budgets over a connection's byte stream (no crate imports); the
    // server's client connections and the upstream pool's connections both wear it.
    ("h2flood", 0),
    // 1 vocabulary: the wire's words and the config's units and diagnostics.
    ("http1", 1),
    ("query", 1),
    ("request_id", 1),
    ("config::errors", 1),
    ("config::units", 1),
    // 2 building blocks: each a self-contained feature, compiled from its own Raw type.
    ("route", 2),
    ("policy", 2),
    ("jwt", 2),
    // OIDC discovery documents and the background source of introspection endpoints.
    ("oidc", 2),
    ("apikey", 2),
    ("ratelimit", 2),
    // Calendar quotas and usage metering over the Redis client.
    ("quota", 2),
    ("usage", 2),
    ("metrics", 2),
    ("trace", 2),
    ("accesslog", 2),
    // Upstream resilience records every worker shares (health, counters) and their math.
    ("resilience", 2),
    // Resolving upstream host names (blocking; control side only).
    ("dns", 2),
    // The Redis client instances share state through (no request types).
    ("redis", 2),
    // The response cache's store and its HTTP semantics, and response compression.
    ("cache", 2),
    ("compress", 2),
    // proxy-wasm filters: the sandbox, the ABI host and per-core instances.
    ("wasm", 2),
    // OpenAPI documents: the loaded model, request validation, the portal's pages, MCP.
    ("openapi", 2),
    // TLS building blocks: rustls over owned buffers, certificates, SNI, tickets, settings.
    ("tls", 2),
    // 3 config: parsing and compiling the file into the immutable table.
    ("config", 3),
    // 4 state: process-wide and per-core state a request runs against.
    ("shared", 4),
    ("core", 4),
    ("upstream", 4),
    ("admission", 4),
    ("telemetry", 4),
    // The exchange's vocabulary: the request model, who the client is, the error table.
    ("exchange::model", 4),
    ("exchange::origin", 4),
    ("exchange::error", 4),
    // 5 exchange: the protocol-neutral phases, and errors turned into responses.
    ("exchange", 5),
    // 6 wires: connection drivers that produce and consume exchanges.
    ("conn", 6),
    ("http2", 6),
    // 7 process: threads, signals, the admin API.
    ("worker", 7),
    ("control", 7),
    ("admin", 7),
    ("sysinfo", 7),
    ("dns_refresh", 7),
    ("key_sync", 7),
    ("redis_sync", 7),
    ("handover", 7),
];

/// How many imports may point upward (each with a `layer:` comment saying why).
const MAX_UPWARD: usize = 3;

// ---------------------------------------------------------------------------------------------
// Lexing: blank comments and literals, then split into identifiers, `::` and punctuation.

/// `src` with comments, string/char literals blanked to spaces (newlines kept, so byte offsets
/// and line numbers still match the original).
fn blank_comments_and_strings(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            let end = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let (mut j, mut depth) = (i + 2, 1);
            while j < b.len() && depth > 0 {
                if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == b'r'
            && (!prev_ident || (i == 1 || !is_ident(b[i - 2])) && b[i - 1] == b'b')
            && matches!(b.get(i + 1), Some(b'"') | Some(b'#'))
        {
            // Raw string r"..", r#".."#, br#".."# (or a raw identifier r#name: left alone).
            let hashes = b[i + 1..].iter().take_while(|&&x| x == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let body = i + 2 + hashes;
            let end = b[body..]
                .windows(close.len())
                .position(|w| w == close.as_slice())
                .map_or(b.len(), |p| body + p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}', 'é') or a lifetime ('a): only literals go.
            if b.get(i + 1) == Some(&b'\\') {
                let mut j = i + 3;
                while j < b.len() && b[j] != b'\'' {
                    j += 1;
                }
                blank(&mut out, i, j + 1);
                i = j + 1;
            } else {
                let ch_len = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                if b.get(i + 1 + ch_len) == Some(&b'\'') {
                    blank(&mut out, i, i + 2 + ch_len);
                    i += 2 + ch_len;
                } else {
                    i += 1;
                }
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
}

/// Tokens of blanked source with their byte offsets.
fn tokenize(s: &str) -> Vec<(Tok, usize)> {
    let b = s.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            toks.push((Tok::Ident(s[start..i].to_string()), start));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            toks.push((Tok::PathSep, i));
            i += 2;
        } else {
            let ch = s[i..].chars().next().unwrap_or(' ');
            toks.push((Tok::Punct(ch), i));
            i += ch.len_utf8();
        }
    }
    toks
}

fn is_punct(t: Option<&(Tok, usize)>, c: char) -> bool {
    matches!(t, Some((Tok::Punct(p), _)) if *p == c)
}

fn is_ident(t: Option<&(Tok, usize)>, name: &str) -> bool {
    matches!(t, Some((Tok::Ident(s), _)) if s == name)
}

/// Index just past the bracket group opening at `open` (`(`, `[` or `{`).
fn skip_group(toks: &[(Tok, usize)], open: usize) -> usize {
    let mut depth = 0i32;
    let mut i = open;
    while i < toks.len() {
        match toks[i].0 {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    toks.len()
}

/// Drops every item marked `#[cfg(test)]`: through its `;`, or its `{ .. }` body.
fn drop_cfg_test(toks: Vec<(Tok, usize)>) -> Vec<(Tok, usize)> {
    let cfg_test = |i: usize| {
        is_punct(toks.get(i), '#')
            && is_punct(toks.get(i + 1), '[')
            && is_ident(toks.get(i + 2), "cfg")
            && is_punct(toks.get(i + 3), '(')
            && is_ident(toks.get(i + 4), "test")
            && is_punct(toks.get(i + 5), ')')
            && is_punct(toks.get(i + 6), ']')
    };
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if !cfg_test(i) {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        let mut j = i + 7;
        // Further attributes on the same item.
        while is_punct(toks.get(j), '#') && is_punct(toks.get(j + 1), '[') {
            j = skip_group(&toks, j + 1);
        }
        while j < toks.len() {
            match toks[j].0 {
                Tok::Punct(';') => {
                    j += 1;
                    break;
                }
                Tok::Punct('{') => {
                    j = skip_group(&toks, j);
                    break;
                }
                Tok::Punct('(' | '[') => j = skip_group(&toks, j),
                _ => j += 1,
            }
        }
        i = j;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing one file: child `mod`s, defined names, `use` bindings, path occurrences.

/// A path as written (`crate::a::b`, `super::x`, `foo::bar`) and the offset of its last segment.
#[derive(Clone, Debug)]
struct PathUse {
    segs: Vec<String>,
    offset: usize,
}

#[derive(Debug, Default)]
struct FileFacts {
    /// `mod name;` declarations (outside `#[cfg(test)]`).
    child_mods: BTreeSet<String>,
    /// Names of items defined here (fn, struct, enum, trait, type, const, static, macro …).
    defines: BTreeSet<String>,
    /// `use` bindings: local name → path as written.
    bindings: HashMap<String, Vec<String>>,
    /// `use path::*` targets, as written.
    globs: Vec<Vec<String>>,
    /// Every path into the crate candidates: `use` leaves and inline `a::b` paths.
    paths: Vec<PathUse>,
}

const DEF_KEYWORDS: &[&str] = &[
    "fn", "struct", "enum", "trait", "type", "const", "static", "union", "mod",
];

/// Flattens one use tree starting at `i` (after `use` / after a `{` or `,`) into `out`.
/// Returns the index after the tree.
fn parse_use_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>, usize)>,
) -> usize {
    let mut path = prefix.to_vec();
    if matches!(toks.get(i), Some((Tok::PathSep, _))) {
        i += 1; // leading `::` (an extern crate path)
        path.push("::".to_string());
    }
    loop {
        match toks.get(i) {
            Some((Tok::Ident(name), off)) => {
                path.push(name.clone());
                i += 1;
                if matches!(toks.get(i), Some((Tok::PathSep, _))) {
                    i += 1;
                    continue;
                }
                let mut alias = None;
                if is_ident(toks.get(i), "as") {
                    if let Some((Tok::Ident(a), _)) = toks.get(i + 1) {
                        alias = Some(a.clone());
                    }
                    i += 2;
                }
                out.push((path, alias, *off));
                return i;
            }
            Some((Tok::Punct('*'), off)) => {
                path.push("*".to_string());
                out.push((path, None, *off));
                return i + 1;
            }
            Some((Tok::Punct('{'), _)) => {
                i += 1;
                while i < toks.len() && !is_punct(toks.get(i), '}') {
                    i = parse_use_tree(toks, i, &path, out);
                    if is_punct(toks.get(i), ',') {
                        i += 1;
                    } else if !is_punct(toks.get(i), '}') {
                        i += 1; // something unexpected: step over it
                    }
                }
                return i + 1;
            }
            _ => return i,
        }
    }
}

impl FileFacts {
    /// Records the `use` tree starting at `i` (bindings, globs, paths); returns where it ends.
    fn record_use(&mut self, toks: &[(Tok, usize)], i: usize) -> usize {
        let mut leaves = Vec::new();
        let end = parse_use_tree(toks, i, &[], &mut leaves);
        for (mut path, alias, offset) in leaves {
            if path.last().is_some_and(|s| s == "*") {
                path.pop();
                self.globs.push(path.clone());
            } else {
                if path.last().is_some_and(|s| s == "self") {
                    path.pop();
                }
                let name = alias.or_else(|| path.last().cloned());
                if let Some(name) = name.filter(|n| n != "_") {
                    self.bindings.insert(name, path.clone());
                }
            }
            self.paths.push(PathUse { segs: path, offset });
        }
        end
    }
}

fn parse_file(src: &str) -> FileFacts {
    let toks = drop_cfg_test(tokenize(&blank_comments_and_strings(src)));
    let mut f = FileFacts::default();
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let mut i = 0;
    while i < toks.len() {
        let Some(word) = ident(i) else {
            i += 1;
            continue;
        };
        if word == "use" {
            let end = f.record_use(&toks, i + 1);
            i = end;
            continue;
        }
        if DEF_KEYWORDS.contains(&word) {
            if let Some(name) = ident(i + 1) {
                f.defines.insert(name.to_string());
                if word == "mod" && is_punct(toks.get(i + 2), ';') {
                    f.child_mods.insert(name.to_string());
                }
            }
        }
        if word == "macro_rules" && is_punct(toks.get(i + 1), '!') {
            if let Some(name) = ident(i + 2) {
                f.defines.insert(name.to_string());
            }
        }
        // An inline path starts at an identifier not preceded by `::` and followed by `::`.
        let after_sep = i > 0 && matches!(toks[i - 1].0, Tok::PathSep);
        if !after_sep && matches!(toks.get(i + 1), Some((Tok::PathSep, _))) {
            let mut segs = vec![word.to_string()];
            let mut j = i + 1;
            while matches!(toks.get(j), Some((Tok::PathSep, _))) {
                match toks.get(j + 1) {
                    Some((Tok::Ident(s), _)) => {
                        segs.push(s.clone());
                        j += 2;
                    }
                    _ => break,
                }
            }
            // An inline path is reported at its first segment.
            f.paths.push(PathUse {
                segs,
                offset: toks[i].1,
            });
            i = j;
            continue;
        }
        i += 1;
    }
    f
}

// ---------------------------------------------------------------------------------------------
// The crate: modules, path resolution, edges.

struct Module {
    /// `a::b` (empty for the crate root).
    path: Vec<String>,
    file: String,
    src: String,
    facts: FileFacts,
}

/// One "uses" edge occurrence: file `from` names something defined in file `to`, at `line`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: usize,
    to: usize,
    line: usize,
}

struct Crate {
    mods: Vec<Module>,
    by_path: HashMap<Vec<String>, usize>,
}

fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.trim_end_matches(".rs");
    let mut segs: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
        segs.pop();
    }
    segs
}

impl Crate {
    /// Builds the crate from `(path relative to src/, source)` pairs. Files no parent declares
    /// (outside `#[cfg(test)]`) are dropped: test modules, leftovers, `main.rs`.
    fn new(files: Vec<(String, String)>) -> Crate {
        let mut mods: Vec<Module> = files
            .into_iter()
            .map(|(file, src)| Module {
                path: module_path(&file),
                facts: parse_file(&src),
                file,
                src,
            })
            .collect();
        let declared: HashMap<Vec<String>, BTreeSet<String>> = mods
            .iter()
            .map(|m| (m.path.clone(), m.facts.child_mods.clone()))
            .collect();
        mods.retain(|m| {
            m.file != "main.rs"
                && (m.path.is_empty() || {
                    let (name, parent) = m.path.split_last().expect("non-empty");
                    declared.get(parent).is_some_and(|c| c.contains(name))
                })
        });
        // A parent dropped takes its children with it.
        loop {
            let paths: BTreeSet<Vec<String>> = mods.iter().map(|m| m.path.clone()).collect();
            let before = mods.len();
            mods.retain(|m| m.path.is_empty() || paths.contains(&m.path[..m.path.len() - 1]));
            if mods.len() == before {
                break;
            }
        }
        let by_path = mods
            .iter()
            .enumerate()
            .map(|(i, m)| (m.path.clone(), i))
            .collect();
        Crate { mods, by_path }
    }

    fn name(&self, m: usize) -> String {
        let p = &self.mods[m].path;
        if p.is_empty() {
            "crate".to_string()
        } else {
            p.join("::")
        }
    }

    /// The absolute module path `segs` (written in module `from`) stands for, or None when it
    /// leaves the crate (std, dependencies) or names nothing known.
    fn absolute(&self, from: usize, segs: &[String], depth: u32) -> Option<Vec<String>> {
        let here = &self.mods[from].path;
        let first = segs.first()?;
        match first.as_str() {
            "crate" => Some(segs[1..].to_vec()),
            "self" => Some(here.iter().chain(&segs[1..]).cloned().collect()),
            "super" => {
                let mut base = here.clone();
                let mut rest = segs;
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
                Some(base.into_iter().chain(rest.iter().cloned()).collect())
            }
            _ => {
                let child: Vec<String> = here.iter().chain([first]).cloned().collect();
                if self.mods[from].facts.child_mods.contains(first)
                    && self.by_path.contains_key(&child)
                {
                    return Some(here.iter().chain(segs).cloned().collect());
                }
                let bound = self.mods[from].facts.bindings.get(first)?;
                if depth > 8 || bound.first() == Some(first) && bound.len() == 1 {
                    return None;
                }
                let base = self.absolute(from, bound, depth + 1)?;
                Some(base.into_iter().chain(segs[1..].iter().cloned()).collect())
            }
        }
    }

    /// The file that defines what absolute path `abs` names: the longest prefix that is a file
    /// module, then through that module's own bindings and globs to where the item lives.
    fn resolve(&self, abs: &[String], depth: u32) -> Option<usize> {
        let k = (0..=abs.len())
            .rev()
            .find(|&k| self.by_path.contains_key(&abs[..k]))?;
        let m = self.by_path[&abs[..k]];
        if k == abs.len() || depth > 8 {
            return Some(m);
        }
        let next = &abs[k];
        let facts = &self.mods[m].facts;
        // Bindings before definitions: `defines` also holds method and local fn names, while
        // a module-level item and a `use` of the same name cannot coexist.
        if facts.bindings.contains_key(next) {
            let target = self.absolute(m, &abs[k..], depth + 1);
            // A binding that leaves the crate (`use std::x`) is this file's own business.
            return Some(
                target
                    .and_then(|t| self.resolve(&t, depth + 1))
                    .unwrap_or(m),
            );
        }
        if facts.defines.contains(next) {
            return Some(m);
        }
        for glob in &facts.globs {
            if let Some(g) = self.absolute(m, glob, depth + 1) {
                if let Some(&gm) = self.by_path.get(&g) {
                    let gf = &self.mods[gm].facts;
                    if gm != m && (gf.defines.contains(next) || gf.bindings.contains_key(next)) {
                        let t: Vec<String> =
                            g.into_iter().chain(abs[k..].iter().cloned()).collect();
                        return self.resolve(&t, depth + 1);
                    }
                }
            }
        }
        Some(m)
    }

    /// Every edge occurrence between two different files (the crate root excluded: it only
    /// declares modules).
    fn edges(&self) -> Vec<Edge> {
        let mut out = BTreeSet::new();
        for (from, m) in self.mods.iter().enumerate() {
            for p in &m.facts.paths {
                let Some(abs) = self.absolute(from, &p.segs, 0) else {
                    continue;
                };
                let Some(to) = self.resolve(&abs, 0) else {
                    continue;
                };
                if to != from && !self.mods[to].path.is_empty() && !m.path.is_empty() {
                    let line = m.src[..p.offset].matches('\n').count() + 1;
                    out.insert(Edge { from, to, line });
                }
            }
        }
        out.into_iter().collect()
    }

    /// The layer of module `m` (longest matching prefix in `LAYERS`), or None when unplaced.
    fn layer(&self, m: usize) -> Option<u8> {
        let name = self.name(m);
        LAYERS
            .iter()
            .filter(|(p, _)| name == *p || name.starts_with(&format!("{p}::")))
            .max_by_key(|(p, _)| p.len())
            .map(|&(_, l)| l)
    }
}

// ---------------------------------------------------------------------------------------------
// Graph checks.

/// Strongly connected components with more than one file (Tarjan), each sorted.
fn cycles(n: usize, edges: &[Edge]) -> Vec<Vec<usize>> {
    let mut adj = vec![BTreeSet::new(); n];
    for e in edges {
        adj[e.from].insert(e.to);
    }
    struct St {
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(v: usize, adj: &[BTreeSet<usize>], s: &mut St) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        for &w in &adj[v] {
            match s.index[w] {
                None => {
                    visit(w, adj, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort_unstable();
                s.out.push(comp);
            }
        }
    }
    let mut s = St {
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(v, &adj, &mut s);
        }
    }
    s.out.sort();
    s.out
}

/// A shortest cycle through `start` inside component `comp` (BFS), as a list of files.
fn cycle_path(start: usize, comp: &[usize], edges: &[Edge]) -> Vec<usize> {
    let inside: BTreeSet<usize> = comp.iter().copied().collect();
    let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for e in edges
            .iter()
            .filter(|e| e.from == v && inside.contains(&e.to))
        {
            if e.to == start {
                return forward_order(start, v, &prev);
            }
            if e.to != start && !prev.contains_key(&e.to) {
                prev.insert(e.to, v);
                queue.push_back(e.to);
            }
        }
    }
    vec![start]
}

/// A cycle `a → b → … → a` as its member list starting at the smallest (for deduplication).
fn rotate_to_min(path: &[usize]) -> Vec<usize> {
    let body = &path[..path.len().saturating_sub(1)];
    let at = (0..body.len()).min_by_key(|&i| body[i]).unwrap_or(0);
    body[at..].iter().chain(&body[..at]).copied().collect()
}

/// start → … → last → start, from BFS predecessors.
fn forward_order(start: usize, last: usize, prev: &BTreeMap<usize, usize>) -> Vec<usize> {
    let mut back = vec![last];
    let mut cur = last;
    while cur != start {
        cur = prev[&cur];
        back.push(cur);
    }
    back.reverse();
    back.push(start);
    back
}

/// Whether line `line` (1-based) of `src`, or a comment line right above it, has a comment
/// containing `layer:`.
fn has_layer_comment(src: &str, line: usize) -> bool {
    let lines: Vec<&str> = src.lines().collect();
    let on = |l: usize| {
        lines
            .get(l.wrapping_sub(1))
            .and_then(|t| t.find("//").map(|p| &t[p..]))
            .is_some_and(|c| c.contains("layer:"))
    };
    on(line) || (line > 1 && lines[line - 2].trim_start().starts_with("//") && on(line - 1))
}

struct Report {
    text: String,
    unplaced: Vec<String>,
    cycles: Vec<Vec<String>>,
    upward: Vec<String>,
    unexplained: Vec<String>,
}

/// Writes every tangle (files that reach each other) and the loops that make it into `text`;
/// returns the loops as module-name paths.
fn report_cycles(krate: &Crate, edges: &[Edge], text: &mut String) -> Vec<Vec<String>> {
    let name = |m: usize| krate.name(m);
    let site = |e: &Edge| format!("{}:{}", krate.mods[e.from].file, e.line);
    let comps = cycles(krate.mods.len(), edges);
    let mut cycle_names = Vec::new();
    let _ = writeln!(
        *text,
        "\ntangles (files that reach each other): {}",
        comps.len()
    );
    for comp in &comps {
        let members: Vec<String> = comp.iter().map(|&m| name(m)).collect();
        let _ = writeln!(
            *text,
            "  {} files depend on each other: {{{}}}",
            comp.len(),
            members.join(", ")
        );
        // The shortest cycle through each member, each listed once: a tangle of 40 files
        // reads as the handful of loops that make it.
        let mut seen = BTreeSet::new();
        let mut loops: Vec<Vec<usize>> = comp
            .iter()
            .map(|&m| cycle_path(m, comp, edges))
            .filter(|p| seen.insert(rotate_to_min(p)))
            .collect();
        loops.sort_by_key(|p| (p.len(), rotate_to_min(p)));
        for path in loops {
            let names: Vec<String> = path.iter().map(|&m| name(m)).collect();
            // Loops inside one directory are usually a `mod.rs` that both defines shared types
            // and uses its children: move the types into their own file.
            let top = &krate.mods[path[0]].path[0];
            let within = path.iter().all(|&m| &krate.mods[m].path[0] == top);
            let _ = writeln!(
                *text,
                "    cycle{}: {}",
                if within {
                    format!(" (inside {top}/)")
                } else {
                    String::new()
                },
                names.join(" → ")
            );
            for w in path.windows(2) {
                let sites: Vec<String> = edges
                    .iter()
                    .filter(|e| e.from == w[0] && e.to == w[1])
                    .map(site)
                    .collect();
                let _ = writeln!(
                    *text,
                    "      {} → {}: {}",
                    name(w[0]),
                    name(w[1]),
                    sites.join(", ")
                );
            }
            cycle_names.push(names);
        }
    }

    cycle_names
}

fn check(krate: &Crate) -> Report {
    let edges = krate.edges();
    let n = krate.mods.len();
    let mut text = String::new();
    let name = |m: usize| krate.name(m);
    let site = |e: &Edge| format!("{}:{}", krate.mods[e.from].file, e.line);

    let unplaced: Vec<String> = (0..n)
        .filter(|&m| !krate.mods[m].path.is_empty() && krate.layer(m).is_none())
        .map(name)
        .collect();
    let files = BTreeSet::from_iter(edges.iter().map(|e| (e.from, e.to))).len();
    let _ = writeln!(
        text,
        "architecture: {n} files, {} edge sites, {files} file-to-file dependencies",
        edges.len()
    );
    if !unplaced.is_empty() {
        let _ = writeln!(text, "\nNOT IN THE LAYER TABLE (add them to LAYERS):");
        for u in &unplaced {
            let _ = writeln!(text, "  {u}");
        }
    }

    // Cycles are counted strictly, file by file, parent and child included: a `mod.rs` only
    // declares and re-exports (re-exports resolve to the defining file), so a child importing
    // from its parent and the parent using that child is a cycle like any other.
    let cycle_names = report_cycles(krate, &edges, &mut text);

    let mut upward = Vec::new();
    let mut unexplained = Vec::new();
    for e in &edges {
        if let (Some(lf), Some(lt)) = (krate.layer(e.from), krate.layer(e.to)) {
            if lf < lt {
                let why = has_layer_comment(&krate.mods[e.from].src, e.line);
                let s = format!(
                    "{} (layer {lf}) → {} (layer {lt}) at {}{}",
                    name(e.from),
                    name(e.to),
                    site(e),
                    if why { "" } else { "  [no `layer:` comment]" }
                );
                if !why {
                    unexplained.push(s.clone());
                }
                upward.push(s);
            }
        }
    }
    let _ = writeln!(
        text,
        "\nupward imports: {} (at most {MAX_UPWARD} allowed, each with a `layer:` comment)",
        upward.len()
    );
    for u in &upward {
        let _ = writeln!(text, "  {u}");
    }
    Report {
        text,
        unplaced,
        cycles: cycle_names,
        upward,
        unexplained,
    }
}

fn read_src_tree(root: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, root, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let rel = p.strip_prefix(root).expect("under src").to_string_lossy();
                let src = std::fs::read_to_string(&p).expect("read source");
                out.push((rel.replace('\\', "/"), src));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn layering_and_no_cycles() {
    // ARCH_SRC checks another tree (another branch's checkout) with this checker.
    let src = std::env::var_os("ARCH_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        std::path::PathBuf::from,
    );
    let krate = Crate::new(read_src_tree(&src));
    let r = check(&krate);
    println!("{}", r.text);
    // For comparing with other tools (scripts/arch-check.sh): one `from -> to` line per pair.
    if let Some(out) = std::env::var_os("ARCH_EDGES") {
        let pairs: BTreeSet<String> = krate
            .edges()
            .iter()
            .map(|e| format!("{} -> {}\n", krate.name(e.from), krate.name(e.to)))
            .collect();
        std::fs::write(out, pairs.into_iter().collect::<String>()).expect("write ARCH_EDGES");
    }
    let mut problems = Vec::new();
    if !r.unplaced.is_empty() {
        problems.push(format!("{} modules not in LAYERS", r.unplaced.len()));
    }
    if !r.cycles.is_empty() {
        problems.push(format!("{} import cycles", r.cycles.len()));
    }
    if r.upward.len() > MAX_UPWARD {
        problems.push(format!(
            "{} upward imports (max {MAX_UPWARD})",
            r.upward.len()
        ));
    }
    if !r.unexplained.is_empty() {
        problems.push(format!(
            "{} upward imports without a `layer:` comment",
            r.unexplained.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "{} (report above)",
        problems.join("; ")
    );
}

// ---------------------------------------------------------------------------------------------
// The checker's own tests, on in-memory crates.

fn krate(files: &[(&str, &str)]) -> Crate {
    Crate::new(
        files
            .iter()
            .map(|(p, s)| (p.to_string(), s.to_string()))
            .collect(),
    )
}

/// Edges as ("from", "to") module names, deduplicated.
fn edge_names(k: &Crate) -> BTreeSet<(String, String)> {
    k.edges()
        .iter()
        .map(|e| (k.name(e.from), k.name(e.to)))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn blanks_comments_strings_and_chars_but_keeps_lifetimes_and_offsets() {
    let src =
        "a // crate::x\n/* crate::y /* nested */ crate::z */ \"crate::s\\\"\" r#\"crate::r\"# \
               '\"' '\\'' fn f<'a>(x: &'a str) b\"crate::b\"";
    let out = blank_comments_and_strings(src);
    assert_eq!(out.len(), src.len());
    assert_eq!(out.matches('\n').count(), 1);
    assert!(!out.contains("crate"), "{out}");
    assert!(!out.contains('"'), "{out}");
    assert!(out.contains("fn f<'a>(x: &'a str)"), "{out}");
}

#[test]
fn use_brace_groups_and_inline_paths() {
    let k = krate(&[
        ("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod d;"),
        (
            "a.rs",
            "use crate::{b, c::{X, Y as Z}};\nfn f() { crate::d::go(); b::h(); }",
        ),
        ("b.rs", "pub fn h() {}"),
        ("c.rs", "pub struct X; pub struct Y;"),
        (
            "d.rs",
            "pub fn go() {} // crate::a::nope\nconst S: &str = \"crate::a::no\";",
        ),
    ]);
    assert_eq!(
        edge_names(&k),
        BTreeSet::from([pair("a", "b"), pair("a", "c"), pair("a", "d")])
    );
}

#[test]
fn super_child_modules_and_reexports() {
    let k = krate(&[
        ("lib.rs", "pub mod p; pub mod q;"),
        // mod.rs only declares and re-exports: not a cycle with its children.
        (
            "p/mod.rs",
            "mod model; mod run;\npub use model::Thing;\npub fn helper() {}",
        ),
        ("p/model.rs", "pub struct Thing;"),
        // super::Thing is defined in model (through the re-export), super::helper in p.
        ("p/run.rs", "use super::Thing;\nfn r() { super::helper(); }"),
        // crate::p::Thing from outside lands on the defining file too.
        (
            "q.rs",
            "use crate::p;\nfn f(_: crate::p::Thing) { p::helper(); }",
        ),
    ]);
    assert_eq!(
        edge_names(&k),
        BTreeSet::from([
            pair("p", "p::model"),
            pair("p::run", "p::model"),
            pair("p::run", "p"),
            pair("q", "p::model"),
            pair("q", "p"),
        ])
    );
}

#[test]
fn cfg_test_code_and_test_files_are_ignored() {
    let k = krate(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        ("a/mod.rs", "#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod inline { use crate::b::X; }\n#[cfg(test)]\nuse crate::b::Y;\npub fn f() {}"),
        ("a/tests.rs", "use crate::b::X;"),
        ("b.rs", "pub struct X; pub struct Y;\nfn g() { crate::a::f(); }"),
    ]);
    assert_eq!(edge_names(&k), BTreeSet::from([pair("b", "a")]));
    assert!(k.mods.iter().all(|m| m.file != "a/tests.rs"));
}

#[test]
fn reports_cycles_as_paths_and_upward_imports() {
    let k = krate(&[
        (
            "lib.rs",
            "pub mod civil; pub mod log; pub mod accesslog; pub mod worker;",
        ),
        ("log.rs", "use crate::accesslog::Sink;"),
        (
            "accesslog/mod.rs",
            "pub struct Sink; fn f() { crate::log::warn(); }",
        ),
        (
            "civil.rs",
            "use crate::worker::X; // layer: test only\nuse crate::worker::Y;",
        ),
        ("worker.rs", "pub fn warn() {} pub struct X; pub struct Y;"),
    ]);
    let r = check(&k);
    assert_eq!(r.cycles.len(), 1, "{}", r.text);
    let c = &r.cycles[0];
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 3, "{}", r.text);
    assert!(c.contains(&"log".to_string()) && c.contains(&"accesslog".to_string()));
    // log (0) → accesslog (2), civil (0) → worker (7) twice; only one line explained.
    assert_eq!(r.upward.len(), 3, "{}", r.text);
    assert_eq!(r.unexplained.len(), 2, "{}", r.text);
    assert!(
        r.text.contains("log → accesslog → log") || r.text.contains("accesslog → log → accesslog")
    );
}

#[test]
fn longest_layer_prefix_wins() {
    let k = krate(&[
        ("lib.rs", "pub mod config;"),
        ("config/mod.rs", "pub mod errors; pub mod raw;"),
        ("config/errors.rs", ""),
        ("config/raw.rs", ""),
    ]);
    let layer = |p: &str| k.layer(k.by_path[&module_path(p)]);
    assert_eq!(layer("config/errors.rs"), Some(1));
    assert_eq!(layer("config/raw.rs"), Some(3));
    assert_eq!(layer("config/mod.rs"), Some(3));
}

#[test]
fn bound_module_names_self_and_super_super() {
    let k = krate(&[
        ("lib.rs", "pub mod a; pub mod b;"),
        ("a/mod.rs", "pub mod x;"),
        ("a/x/mod.rs", "pub mod y; pub mod z;"),
        (
            "a/x/y.rs",
            "fn f() { super::super::x::z::g(); self::h(); } fn h() {}",
        ),
        ("a/x/z.rs", "pub fn g() {}"),
        // `use crate::a as alpha;` then `alpha::x::z::g()` reaches a/x/z.rs.
        (
            "b.rs",
            "use crate::a as alpha;\nfn f() { alpha::x::z::g(); std::mem::drop(1); }",
        ),
    ]);
    assert_eq!(
        edge_names(&k),
        BTreeSet::from([
            pair("a::x::y", "a::x::z"),
            pair("b", "a"),
            pair("b", "a::x::z"),
        ])
    );
}

/// README's Layout section names every source file, so it cannot silently go stale: a new
/// module needs its line there (top-level files and directories as `src/x.rs` / `src/x/`,
/// files inside a directory by file name).
#[test]
fn readme_layout_names_every_module() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let start = readme
        .find("\n## Layout\n")
        .expect("README has a Layout section");
    let rest = &readme[start + 1..];
    let layout = &rest[..rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3)];
    let mut missing = Vec::new();
    let src = root.join("src");
    let mut entries: Vec<_> = std::fs::read_dir(&src)
        .expect("src/")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !layout.contains(&format!("src/{name}/")) {
                missing.push(format!("src/{name}/"));
            }
            let mut files: Vec<_> = std::fs::read_dir(&path)
                .expect("module directory")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|f| f.ends_with(".rs") && f != "mod.rs")
                .collect();
            files.sort();
            for f in files {
                if !layout.contains(&f) {
                    missing.push(format!("src/{name}/{f}"));
                }
            }
        } else if name.ends_with(".rs") && !layout.contains(&format!("src/{name}")) {
            missing.push(format!("src/{name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "README's Layout section does not mention: {}",
        missing.join(", ")
    );
}

/// Every response head ends in `http1::write_response_head` / `end_response_head` (issue 10:
/// one head writer for local, error, proxied and admin responses): nothing outside `src/http1/`
/// starts a status line itself.
#[test]
fn one_response_head_writer() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut offenders = Vec::new();
    let mut stack = vec![root.join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                if !path.ends_with("http1") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                // Test code (fake upstreams and collectors) may write whatever it likes.
                let lines = text.lines().take_while(|l| !l.starts_with("#[cfg(test)]"));
                for (i, line) in lines.enumerate() {
                    if line.contains("write_status_line(") || line.contains("b\"HTTP/1.1 2") {
                        offenders.push(format!("{}:{}", path.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "status lines written outside http1::write_response_head: {offenders:?}"
    );
}
