//! The seed corpora of the `selector`, `session` and `uri` fuzz targets, replayed through the same checks
//! the targets run (`fuzz/src/selector.rs`, `fuzz/src/session.rs`, `fuzz/src/uri.rs`, included here as modules), so
//! every seed and every minimised crash is a regression test in `cargo test`, on stable.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "../fuzz/src/selector.rs"]
mod selector_checks;
#[path = "../fuzz/src/session.rs"]
mod session_checks;
#[path = "../fuzz/src/uri.rs"]
mod uri_checks;

#[test]
fn session_seeds_pass_the_session_checks() {
    let seeds = corpus("session");
    assert!(seeds.len() >= 10, "only {} session seeds", seeds.len());
    for path in seeds {
        eprintln!("{}", path.display());
        session_checks::check_session(&fs::read(&path).expect("seed is readable"));
    }
}

#[test]
fn uri_seeds_pass_the_uri_checks() {
    let seeds = corpus("uri");
    assert!(seeds.len() >= 10, "only {} uri seeds", seeds.len());
    for path in seeds {
        uri_checks::check_uri(&fs::read(&path).expect("seed is readable"));
    }
}

#[test]
fn selector_seeds_pass_the_selector_checks() {
    let seeds = corpus("selector");
    assert!(seeds.len() >= 10, "only {} selector seeds", seeds.len());
    for path in seeds {
        selector_checks::check_selector(&fs::read(&path).expect("seed is readable"));
    }
}

/// The files of `fuzz/corpus/<target>/`, in name order (dot files left out).
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} is readable: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry is readable").path())
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
}
