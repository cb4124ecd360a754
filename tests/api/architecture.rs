//! The seams docs/architecture.md describes, checked on the source: each part of `src/` imports
//! only the parts below it (no cycle), services speak no HTTP, and the store never depends on the
//! crate that speaks ChannelAdvisor.

use std::collections::BTreeSet;
use std::path::Path;

/// The parts of `src/`, lowest first, with the parts each may import.
const LAYERS: &[(&str, &[&str])] = &[
    ("fault", &[]),
    ("service", &[]),
    ("tokens", &["fault", "service"]),
    ("connection_test", &["fault", "service", "tokens"]),
    (
        "connect",
        &["connection_test", "fault", "service", "tokens"],
    ),
    (
        "http",
        &["connect", "connection_test", "fault", "service", "tokens"],
    ),
];

/// Every `.rs` file of a part: `src/{part}.rs` and everything under `src/{part}/`.
fn sources(part: &str) -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let single = root.join(format!("{part}.rs"));
    if single.exists() {
        files.push(single);
    }
    let mut dirs = vec![root.join(part)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.display().to_string(), text)
        })
        .collect()
}

/// The other parts of `src/` a file names with `crate::…`.
fn imported_parts(text: &str, own: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(at, _)| {
            text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|part| !part.is_empty() && part != own)
        .collect()
}

#[test]
fn each_part_of_src_imports_only_the_parts_below_it() {
    let mut wrong = Vec::new();
    for (part, allowed) in LAYERS {
        let files = sources(part);
        assert!(!files.is_empty(), "src/{part} exists");
        for (path, text) in files {
            for import in imported_parts(&text, part) {
                if !allowed.contains(&import.as_str()) {
                    wrong.push(format!("{path} imports crate::{import}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn services_speak_no_http() {
    for part in ["tokens", "connection_test", "connect", "fault", "service"] {
        for (path, text) in sources(part) {
            assert!(
                !text.contains("actix_web") && !text.contains("ApiError"),
                "{path} speaks HTTP: services return their own errors, http/ answers"
            );
        }
    }
}

#[test]
fn the_store_never_depends_on_the_channeladvisor_client() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/Cargo.toml");
    let text = std::fs::read_to_string(manifest).unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("connector")),
        "schema depends on connector"
    );
}
