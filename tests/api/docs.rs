//! The README and docs as a newcomer reads them: what they point at exists, and their commands
//! work when pasted in order in one shell.

use std::path::Path;

fn docs() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    files
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Every path of this repository a doc names in backticks exists (`docs/settings-page.md`
/// pointed at a `src/admin/` that never did).
#[test]
fn the_paths_the_docs_name_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tops = [
        "src/",
        "tests/",
        "benches/",
        "examples/",
        "schema/",
        "connector/",
        "web-hooks/",
        "migrations/",
        "domain/",
        ".ci/",
    ];
    let mut missing = Vec::new();
    for (name, text) in docs() {
        for quoted in text.split('`').skip(1).step_by(2) {
            let path = quoted.split([' ', ':', '#']).next().unwrap_or_default();
            if tops.iter().any(|t| path.starts_with(t))
                && !path.contains(['*', '{', '<'])
                && !root.join(path).exists()
            {
                missing.push(format!("{name}: {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named in the docs but not in the repository: {missing:?}"
    );
}

/// The docs' shell blocks are pasted into one shell after the README's: a narrower token gets
/// a name of its own, so the README's `$TOKEN` keeps its scopes (a `TOKEN=` with fewer scopes made
/// the README's next command answer 403).
#[test]
fn no_doc_narrows_the_readme_token() {
    for (name, text) in docs() {
        for line in text.lines() {
            let line = line.trim_start();
            if line.starts_with("TOKEN=") {
                assert!(
                    !line.contains("--scope"),
                    "{name}: `{line}` narrows the README's $TOKEN"
                );
            }
        }
    }
}

/// Commands in the README run in a checkout as written: the binary is not on the PATH there, so
/// it is named through `cargo run`, and the 60 s JWT leeway is said where a newcomer reads.
#[test]
fn the_readme_speaks_to_a_fresh_checkout() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for line in readme.lines() {
        assert!(
            !line.trim_start().starts_with("ca-connector "),
            "not on the PATH in a checkout: {line}"
        );
        if line.contains("ca-connector --help") {
            assert!(
                line.contains("cargo run") || readme.contains("cargo run --release -q -- --help"),
                "{line}"
            );
        }
        // A first build of minutes must show that it builds, not sit silent.
        if line.contains("--bin ca-sim") && line.trim_start().starts_with("cargo run") {
            assert!(
                !line.contains(" -q "),
                "the simulator's first build is silent: {line}"
            );
        }
    }
    assert!(
        readme.contains("60 s of\nleeway") || readme.contains("60 s of leeway"),
        "the JWT leeway is in the README"
    );
}
