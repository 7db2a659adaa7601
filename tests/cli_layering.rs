//! The layering the README's architecture table promises, checked on the sources:
//! `cli/` files other than `mod.rs` do not import each other (only `mod.rs` dispatches),
//! and the operations in `ops/` neither use the CLI nor print.

use std::path::{Path, PathBuf};

fn rust_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no Rust files in {}", dir.display());
    files
}

/// Lines of `path` that contain any of `needles`, outside `//` comments.
fn offending_lines(path: &Path, needles: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| needles.iter().any(|needle| line.contains(needle)))
        .map(|(n, line)| format!("{}:{}: {}", path.display(), n + 1, line.trim()))
        .collect()
}

#[test]
fn cli_files_do_not_import_each_other() {
    let offending: Vec<String> = rust_files("src/cli")
        .iter()
        .filter(|path| path.file_name().is_some_and(|name| name != "mod.rs"))
        .flat_map(|path| offending_lines(path, &["super::", "crate::cli"]))
        .collect();
    assert!(
        offending.is_empty(),
        "cli/ files must reach each other only through cli/mod.rs:\n{}",
        offending.join("\n")
    );
}

#[test]
fn operations_do_not_use_the_cli_or_print() {
    let needles = ["crate::cli", "println!", "eprintln!", "print!(", "eprint!(", "std::io::stdout", "std::io::stderr"];
    let offending: Vec<String> =
        rust_files("src/ops").iter().flat_map(|path| offending_lines(path, &needles)).collect();
    assert!(offending.is_empty(), "ops/ reports through its Frontend, never prints:\n{}", offending.join("\n"));
}

#[test]
fn the_checks_see_an_offending_line() {
    // The checks above must be able to fail: a file with a sibling import is caught.
    let dir = std::env::temp_dir().join(format!("drplan-layering-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let file = dir.join("apply.rs");
    std::fs::write(&file, "// use super::plan; in a comment is fine\nuse super::plan::read_saved;\n").expect("written");
    let found = offending_lines(&file, &["super::"]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with(":2: use super::plan::read_saved;"), "{found:?}");
}
