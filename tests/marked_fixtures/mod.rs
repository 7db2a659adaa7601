//! Fixtures that mark where diagnostics are expected: a trailing `# <- CODE` comment on
//! each line a problem must be reported at. Shared by `validate.rs` (the invalid plans)
//! and `hostile.rs` (the hostile inputs).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The files of `tests/fixtures/<dir>`, sorted.
pub fn fixtures_in(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// The (line, code) pairs a fixture marks.
pub fn expected(path: &Path) -> BTreeSet<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| line.split_once("# <- ").map(|(_, code)| (i + 1, code.trim().to_string())))
        .collect()
}

/// The (line, code) pairs of the errors `dr validate` reports, with cluster facts from `cluster`.
pub fn reported(path: &Path, cluster: Option<&Path>) -> BTreeSet<(usize, String)> {
    let (_, diags) = drplan::cli::load_and_build(path, cluster, false);
    diags.iter().filter(|d| d.is_error()).map(|d| (d.line().unwrap_or(0), d.code.to_string())).collect()
}

/// Every file reports exactly the problems it marks (all files checked, then one failure).
pub fn assert_each_reports_its_marks(files: &[PathBuf], cluster: Option<&Path>) {
    let mut failures = Vec::new();
    for file in files {
        let want = expected(file);
        assert!(!want.is_empty(), "{} marks no expected problem", file.display());
        let got = reported(file, cluster);
        if want != got {
            failures.push(format!("{}:\n  expected {want:?}\n  reported {got:?}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
