//! `dr validate` reports each kind of problem at the line it is about.
//!
//! Every fixture in `tests/fixtures/invalid` marks the lines where diagnostics are
//! expected with a trailing `# <- CODE` comment; the test asserts that exactly those
//! (line, code) pairs are reported, all in one run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn expected(path: &Path) -> BTreeSet<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| line.split_once("# <- ").map(|(_, code)| (i + 1, code.trim().to_string())))
        .collect()
}

fn reported(path: &Path) -> BTreeSet<(usize, String)> {
    let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cluster");
    let (_, diags) = drplan::cli::load_and_build(path, Some(&cluster), false);
    diags.iter().filter(|d| d.is_error()).map(|d| (d.line().unwrap_or(0), d.code.to_string())).collect()
}

#[test]
fn every_fixture_reports_exactly_its_marked_problems() {
    let files = fixtures();
    assert!(files.len() >= 10, "fixtures missing: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let want = expected(file);
        assert!(!want.is_empty(), "{} marks no expected problem", file.display());
        let got = reported(file);
        if want != got {
            failures.push(format!("{}:\n  expected {want:?}\n  reported {got:?}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_cycle_is_printed_as_a_chain() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/cycle.yaml");
    let (_, diags) = drplan::cli::load_and_build(&path, None, false);
    let cycle = diags.iter().find(|d| d.code == "drplan::plan::cycle").expect("cycle reported");
    assert_eq!(cycle.message, "dependency cycle: save → delete → restore → save");
    assert_eq!(cycle.labels.len(), 3, "one label per after: in the cycle");
}
