//! The config's JSON Schema for editors: `ringway config schema` prints it, the shipped
//! `deploy/ringway.schema.json` is exactly that output, the bundled configs validate against
//! it, and typos and wrong types do not. Validation uses Python's `jsonschema` (an independent
//! implementation: scripts/test.sh installs it; outside CI a missing module skips that check).

mod common;

use std::process::Command;

use common::bin;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ringway.schema.json");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn generated() -> String {
    let out = Command::new(bin())
        .args(["config", "schema"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_shipped_schema_is_the_generated_one() {
    let shipped = std::fs::read_to_string(SHIPPED).unwrap();
    assert!(
        shipped == generated(),
        "deploy/ringway.schema.json is stale: run `ringway config schema > deploy/ringway.schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    assert_eq!(
        v["additionalProperties"], false,
        "unknown top-level tables are errors"
    );
    for table in [
        "listeners",
        "upstreams",
        "routes",
        "policies",
        "dns",
        "tracing",
    ] {
        assert!(v["properties"].get(table).is_some(), "{table} missing");
    }
}

/// Errors `jsonschema` finds in each TOML document (converted to JSON), or None when Python's
/// `jsonschema` is not installed (outside CI only).
fn validate(docs: &[(&str, String)]) -> Option<Vec<(String, Vec<String>)>> {
    let have = Command::new("python3")
        .args(["-c", "import jsonschema"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 -m jsonschema missing under CI (scripts/test.sh installs it)"
        );
        eprintln!("SKIPPED: schema validation (pip install jsonschema)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (name, text) in docs {
        let value: toml::Value = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json = dir.path().join("doc.json");
        std::fs::write(&json, serde_json::to_vec(&value).unwrap()).unwrap();
        let script = "import json,sys,jsonschema\n\
            s=json.load(open(sys.argv[1])); d=json.load(open(sys.argv[2]))\n\
            for e in jsonschema.Draft202012Validator(s).iter_errors(d):\n\
            \x20   print('/'.join(map(str, e.path)) + ': ' + e.message)\n";
        let out = Command::new("python3")
            .args(["-c", script, SHIPPED])
            .arg(&json)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let errors = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        results.push((name.to_string(), errors));
    }
    Some(results)
}

#[test]
fn bundled_configs_validate_and_mistakes_do_not() {
    let mut docs = Vec::new();
    let mut files = vec![
        format!("{ROOT}/config/ringway.toml"),
        format!("{ROOT}/deploy/debian/ringway.toml"),
    ];
    for e in std::fs::read_dir(format!("{ROOT}/config/examples")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            files.push(p.display().to_string());
        }
    }
    for f in &files {
        docs.push((f.as_str(), std::fs::read_to_string(f).unwrap()));
    }
    let typo = "[upstreams.api]\ntargets = [{ address = \"127.0.0.1:1\" }]\nmax_idel = 4\n";
    let wrong_type =
        "[upstreams.api]\ntargets = [{ address = \"127.0.0.1:1\" }]\n\n[upstreams.api.health_check]\ninterval = 5\n";
    let bad_duration = "[server]\ndrain_timeout = \"30 seconds\"\n";
    docs.push(("typo", typo.to_string()));
    docs.push(("wrong type", wrong_type.to_string()));
    docs.push(("bad duration", bad_duration.to_string()));
    let Some(results) = validate(&docs) else {
        return;
    };
    for (name, errors) in &results {
        match name.as_str() {
            "typo" => assert!(
                errors.iter().any(|e| e.contains("max_idel")),
                "a misspelt key is flagged: {errors:?}"
            ),
            "wrong type" => assert!(
                errors
                    .iter()
                    .any(|e| e.contains("health_check") && e.contains("interval")),
                "{errors:?}"
            ),
            "bad duration" => assert!(
                errors.iter().any(|e| e.contains("drain_timeout")),
                "{errors:?}"
            ),
            file => assert!(errors.is_empty(), "{file} does not validate: {errors:?}"),
        }
    }
}
