//! The dependency policy, checked offline from `cargo metadata` (what `cargo deny check licenses
//! bans` would check, without its network access): every crate built for this platform has a
//! license on the allow list, and a crate present in two versions is a known, explained case.
//! Advisories need the RustSec database, which CI cannot fetch: see docs/operations.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: failing loudly is right

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// Licenses whose terms allow realload (Apache-2.0) to use and ship the crate.
const ALLOWED: &[&str] = &[
    "MIT",
    "MIT-0",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "ISC",
    "Zlib",
    "0BSD",
    "CC0-1.0",
    "Unlicense",
    "BSL-1.0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "CDLA-Permissive-2.0",
    "MPL-2.0",
];

/// Crates built in two versions, and why that is accepted for now.
const DUPLICATES: &[(&str, &str)] = &[
    (
        "base64",
        "0.22 for k8s-openapi and tower-http, 0.23 for kube-client",
    ),
    (
        "bit-vec",
        "0.9 for yasna (rcgen's test PKI), 0.10 for proptest: both test-only",
    ),
    (
        "getrandom",
        "0.2 for ring, 0.3 for ahash, 0.4 for rand and tempfile",
    ),
    (
        "hashbrown",
        "0.16 for kube-runtime and the extender's dense table, 0.17 for indexmap",
    ),
    (
        "itertools",
        "0.12 for prometheus-parse, 0.13 for criterion (benches only)",
    ),
    ("r-efi", "getrandom 0.3 and 0.4 (UEFI targets only)"),
    (
        "syn",
        "proc macros split between syn 2 and syn 3 (serde_derive, clap_derive on 3)",
    ),
    (
        "windows-sys",
        "0.52 for ring, 0.61 for tokio and the rest (Windows targets only)",
    ),
];

fn host() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("a host triple")
        .to_string()
}

fn metadata() -> Value {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &host(), "--manifest-path", manifest])
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether an SPDX expression is satisfied by the allow list: one allowed alternative of an
/// `OR`, every term of an `AND` (`WITH` exceptions keep the base license's verdict).
fn allowed(expression: &str) -> bool {
    let cleaned = expression.replace(['(', ')'], " ").replace('/', " OR ");
    cleaned.split(" OR ").any(|alternative| {
        alternative.split(" AND ").all(|term| {
            let base = term.split(" WITH ").next().unwrap_or("").trim();
            ALLOWED.contains(&base)
        })
    })
}

#[test]
fn license_expressions_are_read_as_spdx_says() {
    assert!(allowed("MIT OR Apache-2.0"));
    assert!(allowed("Apache-2.0 AND ISC"));
    assert!(allowed("(MIT OR Apache-2.0) AND Unicode-3.0"));
    assert!(allowed("MIT/Apache-2.0"));
    assert!(allowed("Apache-2.0 WITH LLVM-exception"));
    assert!(!allowed("GPL-3.0"));
    assert!(!allowed("MIT AND GPL-3.0"));
    assert!(allowed("GPL-3.0 OR MIT"));
}

#[test]
fn every_dependency_is_licensed_on_the_allow_list_and_duplicates_are_known() {
    let meta = metadata();
    let workspace: Vec<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut problems = Vec::new();
    let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let packages = meta["packages"].as_array().unwrap();
    for p in packages {
        let id = p["id"].as_str().unwrap_or("");
        let name = p["name"].as_str().unwrap_or("?");
        let version = p["version"].as_str().unwrap_or("?");
        if workspace.contains(&id) {
            continue;
        }
        versions
            .entry(name.to_string())
            .or_default()
            .push(version.to_string());
        match p["license"].as_str() {
            Some(license) if allowed(license) => {}
            Some(license) => problems.push(format!("{name} {version}: license {license}")),
            None => problems.push(format!(
                "{name} {version}: no SPDX license (license-file {})",
                p["license_file"].as_str().unwrap_or("none")
            )),
        }
    }
    for (name, v) in &versions {
        if v.len() > 1 && !DUPLICATES.iter().any(|(d, _)| d == name) {
            problems.push(format!(
                "{name} is built in {} versions ({}); align them or explain it in DUPLICATES",
                v.len(),
                v.join(", ")
            ));
        }
    }
    assert!(
        packages.len() > 100,
        "only {} packages: not the workspace's metadata",
        packages.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
