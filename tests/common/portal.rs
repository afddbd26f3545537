//! Fixtures of the developer portal tests (tests/portal.rs, tests/portal_browser.rs): a
//! petstore-style document with a hostile description, gateway configs that import it with a
//! portal, and a Redis key store with two consumers' keys made by the real `ringway keys` CLI.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::redis::RedisServer;
use super::{bin, build_request, upstream_toml, Conn, Gateway};

/// The HMAC secret of the test key stores.
pub const SECRET: &str = "a-portal-test-secret-of-good-length";

/// The test document. `showPetById` needs an API key in `X-Api-Key` when `secured`.
pub fn spec(secured: bool) -> String {
    let security = if secured {
        "      security:\n        - apiKey: []\n"
    } else {
        ""
    };
    format!(
        r##"openapi: 3.0.3
info:
  title: Portal Pets
  version: "1.0"
  description: "Pets for <script>alert('pwned')</script> people"
tags:
  - name: pets
    description: Everything about pets
paths:
  /pets:
    get:
      operationId: listPets
      summary: List all pets
      tags: [pets]
      parameters:
        - name: limit
          in: query
          description: How many items to return
          schema: {{ type: integer, example: 5 }}
      responses:
        "200": {{ description: A list of pets }}
    post:
      operationId: createPet
      summary: Create a pet
      tags: [pets]
      requestBody:
        required: true
        content:
          application/json:
            schema: {{ $ref: "#/components/schemas/Pet" }}
            example: {{ id: 1, name: Rex }}
      responses:
        "201": {{ description: Created }}
  /pets/{{petId}}:
    get:
      operationId: showPetById
      summary: Info for a specific pet
      tags: [pets]
{security}      parameters:
        - name: petId
          in: path
          required: true
          description: The id of the pet
          schema: {{ type: string }}
          example: "42"
      responses:
        "200": {{ description: The pet }}
  /health:
    get:
      operationId: health
      summary: Health check
      responses:
        "200": {{ description: OK }}
components:
  schemas:
    Pet:
      type: object
      required: [id, name]
      properties:
        id: {{ type: integer }}
        name: {{ type: string }}
  securitySchemes:
    apiKey: {{ type: apiKey, in: header, name: X-Api-Key }}
"##
    )
}

/// Writes the document into `dir` and returns its path.
pub fn write_spec(dir: &Path, secured: bool) -> PathBuf {
    let p = dir.join("pets.yaml");
    std::fs::write(&p, spec(secured)).unwrap();
    p
}

/// A gateway config importing `spec` with upstream `up` under `/v1`; `portal` is the
/// `portal = ...` value (or empty for none); `extra` is appended.
pub fn config(spec: &Path, up: SocketAddr, portal: &str, extra: &str) -> String {
    let portal = if portal.is_empty() {
        String::new()
    } else {
        format!("portal = {portal}\n")
    };
    format!(
        "{}\n[[openapi]]\nspec = \"{}\"\nname = \"pets\"\nupstream = \"pets\"\nprefix = \"/v1\"\n{portal}\n{extra}\n",
        upstream_toml("pets", &[up]),
        spec.display()
    )
}

/// A Redis key store initialized by the CLI, with one key each for `alice` and `bob`.
pub struct KeyStoreFixture {
    pub redis: RedisServer,
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub alice: String,
    pub bob: String,
}

impl KeyStoreFixture {
    pub fn new(prefix: &str) -> KeyStoreFixture {
        let redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let cli = dir.path().join("cli.toml");
        std::fs::write(
            &cli,
            format!(
                "[api_keys]\nstore = \"redis\"\nfile = \"{}\"\n\n{}",
                dir.path().join("keys.toml").display(),
                redis_table(&redis.addr(), prefix)
            ),
        )
        .unwrap();
        keys_cli(&cli, &["import"]);
        let alice = keys_cli(&cli, &["create", "--consumer", "alice"]);
        let bob = keys_cli(&cli, &["create", "--consumer", "bob"]);
        KeyStoreFixture {
            redis,
            dir,
            prefix: prefix.to_string(),
            alice,
            bob,
        }
    }

    /// The `[api_keys]` and `[redis]` tables a gateway needs for this store.
    pub fn tables(&self) -> String {
        format!(
            "[api_keys]\nstore = \"redis\"\nsnapshot = \"{}\"\n\n{}",
            self.dir.path().join("snap.toml").display(),
            redis_table(&self.redis.addr(), &self.prefix)
        )
    }

    /// Starts a gateway with `config` and the store's secret.
    pub fn gateway(&self, config: &str) -> Gateway {
        Gateway::start_env(config, 2, &[("RINGWAY_KEY_SECRET", SECRET)])
    }
}

fn redis_table(addr: &str, prefix: &str) -> String {
    format!("[redis]\nnodes = [\"{addr}\"]\nprefix = \"{prefix}\"\n")
}

/// Runs `ringway keys ARGS --config CLI`; returns stdout (the new key for `create`).
pub fn keys_cli(cli: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("keys")
        .args(args)
        .arg("--config")
        .arg(cli)
        .env("RINGWAY_KEY_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The public id of a full key (`rwk_<id>_<secret>`).
pub fn key_id(key: &str) -> String {
    key.get(4..12).unwrap_or_default().to_string()
}

/// Status of `GET /v1/pets/1` with `key` in `X-Api-Key`.
pub fn pet_status(gw: &Gateway, key: &str) -> u16 {
    let mut c = Conn::open(gw.addr);
    c.send(&build_request(
        "GET",
        "/v1/pets/1",
        &[("X-Api-Key", key)],
        b"",
    ));
    c.read_response(false).map(|r| r.status).unwrap_or(0)
}

/// Polls until `GET /v1/pets/1` with `key` answers `want` (the key sync applies a change
/// within seconds); panics after 10 s with the gateway's log.
pub fn until_status(gw: &Gateway, key: &str, want: u16) {
    let start = Instant::now();
    loop {
        let got = pet_status(gw, key);
        if got == want {
            return;
        }
        if start.elapsed() > Duration::from_secs(10) {
            panic!("still {got}, not {want}, after 10 s; log:\n{}", gw.logs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
