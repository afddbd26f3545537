//! `ringway keys create|list|revoke|rotate|import`: manages the keys file named by
//! `[api_keys]`, or with `store = "redis"` the Redis key store (`redis_cli.rs`).
//!
//! Invariants: a plain key is printed exactly once (stdout, after the file was written) and
//! never stored; `list` never prints keys or hashes. Every change is a locked
//! read-modify-write of the keys file that keeps other entries and comments intact and
//! replaces the file atomically (see `file.rs`). Changes apply to a running gateway on its
//! next reload (SIGHUP or `POST /reload`). Exit codes: 0 ok, 1 config/input problem (clap
//! reports usage errors with 2).
//!
//! The main config is read only for its `[api_keys]` table (other tables are ignored), so this
//! works independently of the rest of the config schema.

use std::io;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use super::cli_common::{self, deadline, hasher, load_settings, print_table, Fail};
pub use super::cli_common::{KeysCmd, KeysIo};
use super::file::{self, KeyEntry, Located};
use super::key::KeyId;
use super::settings::{self, KeysSettings, StoreKind};
use super::store::Hasher;
use crate::civil::unix_now as now_unix;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: a config or input problem.
pub const EXIT_INPUT: u8 = 1;

/// Runs a `keys` subcommand with the real stdout, stderr, clock and environment.
pub fn run(cmd: &KeysCmd, config: &Path) -> ExitCode {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let mut kio = KeysIo {
        out: &mut out,
        err: &mut err,
        now_unix: now_unix(),
        env: &settings::process_env,
    };
    ExitCode::from(run_with(cmd, config, &mut kio))
}

/// Runs a `keys` subcommand; returns the exit code.
pub fn run_with(cmd: &KeysCmd, config: &Path, io: &mut KeysIo<'_>) -> u8 {
    let redis = match load_settings(config) {
        Ok(l) if l.settings.store == StoreKind::Redis => Some(l),
        _ => None,
    };
    let result = match (cmd, redis) {
        (_, Some(loaded)) => super::redis_cli::run(cmd, config, &loaded, io),
        (KeysCmd::Import { .. }, None) => import_needs_redis(config),
        (cmd, None) => run_file(cmd, config, io),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(f) => {
            // Nothing useful to do if stderr itself fails.
            let _ = match f {
                Fail::Config(errs) => errs.iter().try_for_each(|e| writeln!(io.err, "error: {e}")),
                Fail::Msg(m) => writeln!(io.err, "error: {m}"),
            };
            EXIT_INPUT
        }
    }
}

fn import_needs_redis(config: &Path) -> Result<(), Fail> {
    // A config problem is reported as such; otherwise the store is the file one.
    load_settings(config)?;
    Err(Fail::Msg(
        "`keys import` copies the keys file into Redis: set store = \"redis\" in [api_keys] (and a [redis] table) first".into(),
    ))
}

/// The keys-file store (`store = "file"`).
fn run_file(cmd: &KeysCmd, config: &Path, io: &mut KeysIo<'_>) -> Result<(), Fail> {
    match cmd {
        KeysCmd::Create { consumer, expires } => create(config, consumer, *expires, io),
        KeysCmd::List => list(config, io),
        KeysCmd::Revoke { id } => revoke(config, id, io),
        KeysCmd::Rotate { id, grace, expires } => rotate(config, id, *grace, *expires, io),
        KeysCmd::Import { .. } => import_needs_redis(config),
    }
}

fn read_keys_file(path: &Path) -> Result<Option<String>, String> {
    match crate::bounded_file::read_to_string(path, crate::bounded_file::MAX_KEYS_FILE_BYTES) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read keys file {}: {e}", path.display())),
    }
}

/// What a change wants written: the edited text and the entries it must parse back to.
struct Change {
    text: String,
    expected: Vec<KeyEntry>,
}

/// Locked read-modify-write of the keys file. `edit` sees the current text and entries and
/// returns the change, or `None` for "nothing to write".
fn modify(
    s: &KeysSettings,
    io: &mut KeysIo<'_>,
    mut edit: impl FnMut(&str, &[Located]) -> Result<Option<Change>, Fail>,
) -> Result<(), Fail> {
    // The directory of the file that will be replaced (a symlink's target), not of the path
    // as written: writers through two links to one file must take the same lock.
    let target = file::written_path(&s.file)
        .map_err(|e| format!("cannot resolve keys file {}: {e}", s.file.display()))?;
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let _lock =
        file::lock_dir(dir).map_err(|e| format!("cannot lock directory {}: {e}", dir.display()))?;
    let src = read_keys_file(&s.file)?.unwrap_or_default();
    let located = file::parse_located(&src, &s.file, s.mode).map_err(Fail::Config)?;
    let Some(change) = edit(&src, &located)? else {
        return Ok(());
    };
    // The in-place edit must parse back to exactly the intended entries; if a hand-written
    // layout defeated it, write the canonical form instead (comments are lost, data is not).
    let text = match file::parse_keys(&change.text, &s.file, s.mode) {
        Ok(got) if got == change.expected => change.text,
        _ => {
            let _ = writeln!(
                io.err,
                "note: rewrote {} in canonical form (comments were dropped)",
                s.file.display()
            );
            file::render(&change.expected)
        }
    };
    file::write_atomic(&s.file, text.as_bytes())
        .map_err(|e| format!("cannot write keys file {}: {e}", s.file.display()))?;
    Ok(())
}

fn new_entry(
    hasher: &Hasher,
    consumer: &str,
    now: u64,
    expires: Option<u64>,
    existing: &[Located],
) -> Result<(KeyEntry, String), Fail> {
    cli_common::generate_entry(hasher, consumer, now, expires, |id| {
        existing.iter().any(|(e, _)| e.id == id)
    })
}

fn create(
    config: &Path,
    consumer: &str,
    lifetime: Option<Duration>,
    io: &mut KeysIo<'_>,
) -> Result<(), Fail> {
    file::valid_consumer(consumer)?;
    let now = io.now_unix;
    let expires = lifetime.map(|d| deadline(now, d)).transpose()?;
    let loaded = load_settings(config)?;
    let hasher = hasher(&loaded, config, io)?;
    let mut made = None;
    modify(&loaded.settings, io, |src, located| {
        let (entry, plain) = new_entry(&hasher, consumer, now, expires, located)?;
        let mut expected: Vec<KeyEntry> = located.iter().map(|(e, _)| e.clone()).collect();
        expected.push(entry.clone());
        let text = file::append(src, &entry);
        made = Some((entry.id, plain));
        Ok(Some(Change { text, expected }))
    })?;
    let Some((id, plain)) = made else {
        return Err(Fail::Msg("no key was created".into()));
    };
    cli_common::report_created(
        io,
        id,
        &plain,
        consumer,
        expires,
        "applies on the next reload",
    )
}

fn find(located: &[Located], id: KeyId) -> Option<usize> {
    located.iter().position(|(e, _)| e.id == id)
}

fn parse_id(id: &str, s: &KeysSettings) -> Result<KeyId, Fail> {
    KeyId::parse(id.trim().as_bytes()).ok_or_else(|| {
        Fail::Msg(format!(
            "no key with id {id:?} in {} (ids are 8 lowercase hex digits, see `ringway keys list`)",
            s.file.display()
        ))
    })
}

fn unknown(id: KeyId, s: &KeysSettings) -> Fail {
    Fail::Msg(format!("no key with id {id} in {}", s.file.display()))
}

fn revoke(config: &Path, id: &str, io: &mut KeysIo<'_>) -> Result<(), Fail> {
    let loaded = load_settings(config)?;
    let s = &loaded.settings;
    let id = parse_id(id, s)?;
    let mut outcome = None;
    modify(s, io, |src, located| {
        let i = find(located, id).ok_or_else(|| unknown(id, s))?;
        let (entry, spans) = &located[i];
        outcome = Some((entry.consumer.clone(), entry.revoked));
        if entry.revoked {
            return Ok(None);
        }
        let mut expected: Vec<KeyEntry> = located.iter().map(|(e, _)| e.clone()).collect();
        expected[i].revoked = true;
        Ok(Some(Change {
            text: file::set_revoked(src, spans),
            expected,
        }))
    })?;
    if let Some((consumer, already)) = outcome {
        let note = if already { " (it already was)" } else { "" };
        let _ = writeln!(
            io.err,
            "revoked key {id} of consumer {consumer}{note} (applies on the next reload)"
        );
    }
    Ok(())
}

fn rotate(
    config: &Path,
    id: &str,
    grace: Duration,
    lifetime: Option<Duration>,
    io: &mut KeysIo<'_>,
) -> Result<(), Fail> {
    let now = io.now_unix;
    let grace_end = deadline(now, grace)?;
    let expires = lifetime.map(|d| deadline(now, d)).transpose()?;
    let loaded = load_settings(config)?;
    let s = &loaded.settings;
    let id = parse_id(id, s)?;
    let hasher = hasher(&loaded, config, io)?;
    let mut made = None;
    modify(s, io, |src, located| {
        let i = find(located, id).ok_or_else(|| unknown(id, s))?;
        let (old, spans) = &located[i];
        if old.revoked {
            return Err(Fail::Msg(format!(
                "key {id} is revoked; create a new key with `ringway keys create --consumer {}`",
                old.consumer
            )));
        }
        let old_end = old.expires.map_or(grace_end, |t| t.min(grace_end));
        let (entry, plain) = new_entry(&hasher, &old.consumer, now, expires, located)?;
        let mut expected: Vec<KeyEntry> = located.iter().map(|(e, _)| e.clone()).collect();
        let mut text = src.to_string();
        if old.expires != Some(old_end) {
            expected[i].expires = Some(old_end);
            text = file::set_expires(src, spans, old_end);
        }
        expected.push(entry.clone());
        let text = file::append(&text, &entry);
        made = Some((entry.id, plain, old.consumer.clone(), old_end));
        Ok(Some(Change { text, expected }))
    })?;
    let Some((new_id, plain, consumer, old_end)) = made else {
        return Err(Fail::Msg("no key was created".into()));
    };
    cli_common::report_rotated(
        io,
        (id, new_id),
        &plain,
        &consumer,
        old_end,
        "applies on the next reload",
    )
}

fn list(config: &Path, io: &mut KeysIo<'_>) -> Result<(), Fail> {
    let loaded = load_settings(config)?;
    let s = &loaded.settings;
    let Some(src) = read_keys_file(&s.file)? else {
        let _ = writeln!(
            io.err,
            "no keys yet ({} does not exist; create one with `ringway keys create`)",
            s.file.display()
        );
        return Ok(());
    };
    let entries = file::parse_keys(&src, &s.file, s.mode).map_err(Fail::Config)?;
    print_table(&entries, io)
}

#[cfg(test)]
fn configured_mode(config: &Path) -> Option<super::types::HashMode> {
    load_settings(config).ok().map(|l| l.settings.mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::key;
    use crate::apikey::{HashMode, KeyError, KeyStore};
    use crate::civil::format_rfc3339;
    use clap::{CommandFactory, Parser};
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    const SECRET: &str = "test-secret-test-secret-test-sec";
    const T0: u64 = 1_750_000_000;

    #[derive(Parser)]
    struct TestCli {
        #[command(subcommand)]
        cmd: Top,
        #[arg(long, short, global = true, default_value = "config/ringway.toml")]
        config: PathBuf,
    }

    #[derive(clap::Subcommand)]
    enum Top {
        Keys {
            #[command(subcommand)]
            cmd: KeysCmd,
        },
    }

    fn parse(args: &[&str]) -> Result<(KeysCmd, PathBuf), clap::Error> {
        let cli = TestCli::try_parse_from(std::iter::once("ringway").chain(args.iter().copied()))?;
        let Top::Keys { cmd } = cli.cmd;
        Ok((cmd, cli.config))
    }

    struct Env {
        dir: tempfile::TempDir,
        config: PathBuf,
        mode: HashMode,
    }

    impl Env {
        fn new(table_extra: &str) -> Env {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("ringway.toml");
            fs::write(
                &config,
                format!(
                    "[server]\nworkers = 2\n\n[[routes]]\nname = \"x\"\n\n[api_keys]\nfile = \"keys.toml\"\n{table_extra}"
                ),
            )
            .unwrap();
            let mode = configured_mode(&config).unwrap_or(HashMode::HmacSha256);
            Env { dir, config, mode }
        }

        fn keys_path(&self) -> PathBuf {
            self.dir.path().join("keys.toml")
        }

        /// Runs `ringway keys <args>` at `now`; returns (exit code, stdout, stderr).
        fn run(&self, args: &[&str], now: u64) -> (u8, String, String) {
            let mut full = vec!["keys"];
            full.extend_from_slice(args);
            full.push("--config");
            let cfg = self.config.to_str().unwrap().to_string();
            full.push(&cfg);
            let (cmd, config) = parse(&full).unwrap();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let env = |k: &str| (k == "RINGWAY_KEY_SECRET").then(|| SECRET.to_string());
            let code = run_with(
                &cmd,
                &config,
                &mut KeysIo {
                    out: &mut out,
                    err: &mut err,
                    now_unix: now,
                    env: &env,
                },
            );
            (
                code,
                String::from_utf8(out).unwrap(),
                String::from_utf8(err).unwrap(),
            )
        }

        fn create(&self, consumer: &str) -> String {
            let (code, out, err) = self.run(&["create", "--consumer", consumer], T0);
            assert_eq!(code, 0, "{err}");
            out.trim_end().to_string()
        }

        fn store(&self) -> KeyStore {
            let src = fs::read_to_string(self.keys_path()).unwrap();
            let entries = file::parse_keys(&src, &self.keys_path(), self.mode).unwrap();
            let secret = (self.mode == HashMode::HmacSha256).then_some(SECRET.as_bytes());
            KeyStore::new(self.mode, secret, &entries).unwrap()
        }
    }

    #[test]
    fn clap_embedding_is_valid() {
        TestCli::command().debug_assert();
        let (cmd, config) = parse(&[
            "keys",
            "create",
            "--config",
            "c.toml",
            "--consumer",
            "acme",
            "--expires",
            "30d",
        ])
        .unwrap();
        assert_eq!(config, Path::new("c.toml"));
        assert_eq!(
            cmd,
            KeysCmd::Create {
                consumer: "acme".into(),
                expires: Some(Duration::from_secs(30 * 86_400)),
            }
        );
        let (cmd, _) = parse(&["keys", "import", "--from", "old.toml"]).unwrap();
        assert_eq!(
            cmd,
            KeysCmd::Import {
                from: Some("old.toml".into())
            }
        );
        let (cmd, _) = parse(&["keys", "rotate", "0000abcd"]).unwrap();
        assert_eq!(
            cmd,
            KeysCmd::Rotate {
                id: "0000abcd".into(),
                grace: Duration::from_secs(86_400),
                expires: None
            }
        );
        for bad in [
            &["keys", "create", "--consumer", "a", "--expires", "30x"][..],
            &["keys", "create", "--consumer", "a", "--expires", "0s"],
            &[
                "keys",
                "create",
                "--consumer",
                "a",
                "--expires",
                "99999999999999d",
            ],
            &["keys", "create"],
            &["keys", "revoke"],
        ] {
            let e = parse(bad).err().unwrap();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }

    #[test]
    fn create_prints_a_key_that_authenticates_and_is_not_stored() {
        for extra in ["", "hash = \"sha256\"\n"] {
            let env = Env::new(extra);
            let (code, out, err) = env.run(&["create", "--consumer", "acme"], T0);
            assert_eq!(code, 0, "{err}");
            let plain = out.trim_end();
            assert_eq!(out.lines().count(), 1);
            assert!(err.contains("will not be shown again"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
            let store = env.store();
            let m = store.authenticate(plain.as_bytes(), T0 + 10).unwrap();
            assert_eq!(&**m.consumer, "acme");
            assert!(err.contains(m.id), "{err}");
            // One character changed → unknown.
            let mut bad = plain.as_bytes().to_vec();
            let last = bad.len() - 1;
            bad[last] = if bad[last] == b'x' { b'y' } else { b'x' };
            assert_eq!(store.authenticate(&bad, T0), Err(KeyError::Unknown));
            // The file holds neither the key nor its secret part.
            let text = fs::read_to_string(env.keys_path()).unwrap();
            let secret_part =
                &plain[crate::apikey::key::PREFIX.len() + crate::apikey::key::ID_LEN + 1..];
            assert!(!text.contains(secret_part) && !text.contains(plain));
            assert!(text.contains(&format!("{}:", env.mode.name())), "{text}");
            let mode = fs::metadata(env.keys_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn create_with_expiry_and_list() {
        let env = Env::new("");
        let (code, out, err) = env.run(&["create", "--consumer", "acme", "--expires", "1h"], T0);
        assert_eq!(code, 0, "{err}");
        let k = out.trim_end().to_string();
        let store = env.store();
        assert!(store.authenticate(k.as_bytes(), T0 + 3_599).is_ok());
        assert_eq!(
            store.authenticate(k.as_bytes(), T0 + 3_600),
            Err(KeyError::Expired)
        );
        let k2 = env.create("beta");
        let id2 = key::key_id(k2.as_bytes()).unwrap().to_string();
        assert_eq!(env.run(&["revoke", &id2], T0).0, 0);

        let (code, out, _) = env.run(&["list"], T0 + 7_200);
        assert_eq!(code, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(
            lines[0].starts_with("ID") && lines[0].ends_with("STATUS"),
            "{out}"
        );
        assert!(
            lines[1].contains("acme") && lines[1].ends_with("expired"),
            "{out}"
        );
        assert!(
            lines[2].contains("beta") && lines[2].ends_with("revoked"),
            "{out}"
        );
        assert!(lines[2].contains(" - "), "no expiry shows as '-': {out}");
        assert!(!out.contains("sha256") && !out.contains(&k[12..]) && !out.contains(&k2[12..]));
        let (_, out, _) = env.run(&["list"], T0);
        assert!(out.lines().nth(1).unwrap().ends_with("active"), "{out}");
    }

    #[test]
    fn revoke_marks_revoked_and_unknown_ids_fail() {
        let env = Env::new("");
        let k = env.create("acme");
        let id = key::key_id(k.as_bytes()).unwrap().to_string();
        let (code, _, err) = env.run(&["revoke", &id], T0);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            env.store().authenticate(k.as_bytes(), T0),
            Err(KeyError::Revoked)
        );
        // Idempotent.
        let (code, _, err) = env.run(&["revoke", &id], T0);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("already"), "{err}");
        assert_eq!(
            fs::read_to_string(env.keys_path())
                .unwrap()
                .matches("revoked")
                .count(),
            1
        );

        let other = if id == "00000000" {
            "00000001"
        } else {
            "00000000"
        };
        let (code, out, err) = env.run(&["revoke", other], T0);
        assert_eq!((code, out.as_str()), (1, ""));
        assert!(err.contains("no key with id"), "{err}");
        let (code, _, _) = env.run(&["revoke", "not-an-id"], T0);
        assert_eq!(code, 1);
    }

    #[test]
    fn rotate_with_grace() {
        let env = Env::new("");
        let old = env.create("acme");
        let old_id = key::key_id(old.as_bytes()).unwrap().to_string();
        let now = T0 + 100;
        let (code, out, err) = env.run(&["rotate", &old_id, "--grace", "24h"], now);
        assert_eq!(code, 0, "{err}");
        let new = out.trim_end().to_string();
        assert_ne!(new, old);
        let store = env.store();
        let end = now + 86_400;
        assert!(store.authenticate(old.as_bytes(), end - 1).is_ok());
        assert_eq!(
            store.authenticate(old.as_bytes(), end),
            Err(KeyError::Expired)
        );
        let m = store.authenticate(new.as_bytes(), end + 1_000_000).unwrap();
        assert_eq!(&**m.consumer, "acme");
        assert!(err.contains(&format_rfc3339(end)), "{err}");

        // Rotating the old key again with a longer grace keeps its earlier expiry.
        let (code, _, err) = env.run(&["rotate", &old_id, "--grace", "7d"], now);
        assert_eq!(code, 0, "{err}");
        assert!(env.store().authenticate(old.as_bytes(), end).is_err());
        assert!(err.contains(&format_rfc3339(end)), "{err}");
        // A shorter grace moves it earlier.
        let (code, _, _) = env.run(&["rotate", &old_id, "--grace", "0s"], now);
        assert_eq!(code, 0);
        assert_eq!(
            env.store().authenticate(old.as_bytes(), now),
            Err(KeyError::Expired)
        );
        assert_eq!(env.store().len(), 4);

        let (code, _, err) = env.run(&["revoke", &old_id], now);
        assert_eq!(code, 0, "{err}");
        let (code, out, err) = env.run(&["rotate", &old_id], now);
        assert_eq!((code, out.as_str()), (1, ""));
        assert!(err.contains("revoked"), "{err}");
        let (code, _, _) = env.run(&["rotate", "0badc0de"], now);
        assert_eq!(code, 1);
    }

    #[test]
    fn rewrites_keep_other_entries_comments_and_mode() {
        let env = Env::new("");
        let a = env.create("alpha");
        let b = env.create("beta");
        let c = env.create("gamma");
        let path = env.keys_path();
        // A human comment and a looser file mode must survive rewrites.
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, format!("{text}# keep me\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let before = fs::read_to_string(&path).unwrap();

        let b_id = key::key_id(b.as_bytes()).unwrap().to_string();
        assert_eq!(env.run(&["revoke", &b_id], T0).0, 0);
        let after = fs::read_to_string(&path).unwrap();
        assert!(after.contains("# keep me\n"));
        assert_eq!(after.len(), before.len() + "revoked = true\n".len());
        // Every line of the old file is still there, in order.
        let mut lines = after.lines();
        for l in before.lines() {
            assert!(lines.any(|x| x == l), "lost line {l:?}");
        }
        let store = env.store();
        assert!(store.authenticate(a.as_bytes(), T0).is_ok());
        assert_eq!(store.authenticate(b.as_bytes(), T0), Err(KeyError::Revoked));
        assert!(store.authenticate(c.as_bytes(), T0).is_ok());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers = fs::read_dir(env.dir.path()).unwrap().count();
        assert_eq!(leftovers, 2, "only the config and the keys file");
    }

    #[test]
    fn config_problems_exit_1_with_positions() {
        // HMAC mode without the secret in the environment.
        let env = Env::new("secret_env = \"NOT_SET_ANYWHERE\"\n");
        let (code, out, err) = env.run(&["create", "--consumer", "acme"], T0);
        assert_eq!((code, out.as_str()), (1, ""));
        assert!(
            err.contains("ringway.toml:9:") && err.contains("NOT_SET_ANYWHERE"),
            "{err}"
        );
        assert!(!env.keys_path().exists());

        let env = Env::new("hash = \"md5\"\n");
        let (code, _, err) = env.run(&["list"], T0);
        assert_eq!(code, 1);
        assert!(
            err.contains("ringway.toml:9:") && err.contains("api_keys.hash"),
            "{err}"
        );

        let env = Env::new("colour = 1\n");
        let (code, _, err) = env.run(&["list"], T0);
        assert_eq!(code, 1);
        assert!(err.contains("colour"), "{err}");

        let env = Env::new("");
        fs::write(&env.config, "[server]\nworkers = 1\n").unwrap();
        let (code, _, err) = env.run(&["list"], T0);
        assert_eq!(code, 1);
        assert!(err.contains("[api_keys]"), "{err}");

        let env = Env::new("");
        let (code, _, err) = env.run(&["create", "--consumer", "bad name"], T0);
        assert_eq!(code, 1);
        assert!(err.contains("invalid consumer"), "{err}");

        // A broken keys file: the error names it and its line; nothing is written.
        let env = Env::new("");
        env.create("acme");
        let text = fs::read_to_string(env.keys_path()).unwrap();
        let broken = text.replace("consumer = \"acme\"", "consumer = \"acme\"\ncolour = 1");
        fs::write(env.keys_path(), &broken).unwrap();
        let (code, out, err) = env.run(&["create", "--consumer", "beta"], T0);
        assert_eq!((code, out.as_str()), (1, ""));
        let line = broken
            .lines()
            .position(|l| l.starts_with("colour"))
            .unwrap()
            + 1;
        assert!(err.contains(&format!("keys.toml:{line}:")), "{err}");
        assert!(err.contains("keys[0].colour"), "{err}");
        assert_eq!(fs::read_to_string(env.keys_path()).unwrap(), broken);
    }

    #[test]
    fn import_needs_the_redis_store() {
        let env = Env::new("");
        let (code, out, err) = env.run(&["import"], T0);
        assert_eq!((code, out.as_str()), (1, ""));
        assert!(err.contains("store = \"redis\""), "{err}");
        assert!(!env.keys_path().exists());
    }

    #[test]
    fn list_without_a_keys_file() {
        let env = Env::new("");
        let (code, out, err) = env.run(&["list"], T0);
        assert_eq!((code, out.as_str()), (0, ""));
        assert!(err.contains("no keys yet"), "{err}");
    }
}
