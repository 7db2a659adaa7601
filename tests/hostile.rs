//! Hostile input (issue 14): long chains and cycles, terminal injection, names and
//! numbers Kubernetes would refuse, a byte order mark.
//!
//! Every file in `tests/fixtures/hostile` marks the lines where diagnostics are expected
//! with a trailing `# <- CODE` comment, as in `tests/fixtures/invalid`; generated inputs
//! (100,000-step chains, 10,000-step cycles) are written to the target directory. Long
//! chains run through the `dr` binary, so a stack overflow (an abort) fails the test.

mod marked_fixtures;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The documented step limit (docs/language.md, "Limits on input").
const STEP_LIMIT: usize = 25_000;

fn hostile_fixtures() -> Vec<PathBuf> {
    marked_fixtures::fixtures_in("hostile")
}

fn dr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dr")).args(args).env("NO_COLOR", "1").output().expect("dr runs")
}

fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Characters that must never reach a terminal raw: C0 except line feed and tab, DEL, C1.
fn raw_controls(bytes: &[u8]) -> Vec<char> {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|&c| c != '\n' && c != '\t' && (c < ' ' || ('\u{7f}'..='\u{9f}').contains(&c) || c == '\u{202e}'))
        .collect()
}

/// A plan of `n` steps where each waits for the one before it; with `cycle`, the
/// first also waits for the last.
fn chain(n: usize, cycle: bool) -> String {
    let mut text = String::from(
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: chain}\nclusters: [{name: primary, namespace: db}]\nsteps:\n",
    );
    for i in 0..n {
        let after = match i {
            0 if cycle => format!(", after: s{}", n - 1),
            0 => String::new(),
            _ => format!(", after: s{}", i - 1),
        };
        let _ = writeln!(
            text,
            "  - {{id: s{i}{after}, scale: {{workload: {{kind: StatefulSet, name: db}}, replicas: 1}}}}"
        );
    }
    text
}

#[test]
fn every_hostile_fixture_reports_exactly_its_marked_problems() {
    let files = hostile_fixtures();
    assert!(files.len() >= 6, "fixtures missing: {files:?}");
    marked_fixtures::assert_each_reports_its_marks(&files, None);
}

#[test]
fn no_control_character_from_a_plan_reaches_the_terminal() {
    for file in hostile_fixtures() {
        let path = file.display().to_string();
        let out = dr(&["validate", &path]);
        assert_eq!(out.status.code(), Some(1), "{path}");
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let raw = raw_controls(bytes);
            assert!(raw.is_empty(), "{path}: {stream} carries raw {raw:?}:\n{}", String::from_utf8_lossy(bytes));
        }
    }
    // The escaped form is shown instead, so the reviewer sees what is there.
    let quoted = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile/injection-quoted.yaml");
    let out = dr(&["validate", &quoted.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains(r"invalid step id `save\x1b[2J\x1b[31m`"), "{text}");
    assert!(text.contains(r"`snap\x1b]0;pwned\x07`"), "{text}");
    assert!(text.contains(r"unknown field `sc\x1b[2Jale`"), "{text}");
    assert!(text.contains(r"cm\u{9b}2J\u{202e}"), "{text}");
}

#[test]
fn graph_output_escapes_control_characters_in_every_format() {
    let plan = scratch(
        "graph-injection.yaml",
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: graph-injection}\nclusters: [{name: primary}]\nsteps:\n  - id: snapshot\n    ebsSnapshot: {region: \"us-east-1\\e[2J\\e[31m\", volumeId: \"vol-1\\e]0;pwned\\a\"}\n",
    );
    for format in ["text", "dot", "mermaid"] {
        let out = dr(&["graph", &plan.display().to_string(), "--format", format]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{format}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(raw_controls(&out.stdout).is_empty(), "{format} carries raw control characters:\n{stdout}");
        assert!(stdout.contains(r"x1b]0;pwned"), "{format}: {stdout}");
    }
}

#[test]
fn rendered_columns_match_the_reported_location() {
    // A byte order mark, and multi-byte characters before the error on its line: the
    // rendered `[file:line:col]` counts characters, like `Diagnostic::location`.
    let unicode = scratch(
        "unicode-columns.yaml",
        "\u{feff}apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: cols, description: \"ünïcödé ☕\", bogus: 1}\nclusters: [{name: primary}]\nsteps: []\n",
    );
    let bom = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile/bom.yaml");
    for (path, location) in [(&bom, ":5:1"), (&unicode, ":3:50")] {
        let (_, diags) = drplan::cli::load_and_build(path, None, false);
        let diag = diags.iter().find(|d| d.is_error()).expect("an error");
        let at = diag.location().unwrap();
        assert!(at.ends_with(location), "{at}, expected {location}");
        let rendered = diag.render(false);
        assert!(rendered.contains(&format!("[{at}]")), "rendered header differs from {at}:\n{rendered}");
    }
}

#[test]
fn a_chain_at_the_step_limit_validates_and_graphs_without_overflowing_the_stack() {
    let plan = scratch("chain-at-limit.yaml", &chain(STEP_LIMIT, false));
    let path = plan.display().to_string();
    let out = dr(&["validate", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let out = dr(&["graph", &path]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("critical path {STEP_LIMIT} steps")), "{}", &text[..text.len().min(400)]);
}

#[test]
fn graph_walks_do_not_recurse() {
    // On a 256 KiB stack a recursive walk over 10,000 steps overflows (and aborts the
    // test binary); iterative ones do not notice.
    const STEPS: usize = 10_000;
    let plan = scratch("chain-small-stack.yaml", &chain(STEPS, false));
    let (built, diags) = drplan::cli::load_and_build(&plan, None, false);
    assert!(!diags.has_errors(), "{:?}", diags.iter().next());
    let (_, graph) = built.expect("graph");
    let walks = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            let (path, _) = graph.critical_path();
            assert_eq!(path.len(), STEPS);
            assert_eq!(graph.levels().into_iter().max(), Some(STEPS - 1));
            let last = graph.index_of(&format!("s{}", STEPS - 1)).unwrap();
            assert_eq!(graph.ancestors(last).len(), STEPS - 1);
            use drplan::graph::render::{Format, render};
            for format in [Format::Text, Format::Dot, Format::Mermaid] {
                assert!(render(&graph, format).len() > STEPS);
            }
        })
        .unwrap();
    walks.join().expect("walks finish on a 256 KiB stack");
}

#[test]
fn a_plan_over_the_step_limit_is_refused_with_a_diagnostic() {
    // 100,000 steps in one `after:` chain used to overflow the stack (exit 134).
    // (The check counts entries before decoding any, so they need not be complete.)
    let mut text = chain(2, false);
    for i in 2..100_000 {
        let _ = writeln!(text, "  - {{after: s{}}}", i - 1);
    }
    let plan = scratch("chain-100k.yaml", &text);
    let out = dr(&["validate", &plan.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("drplan::input::too_many_steps"), "{stderr}");
    assert!(stderr.contains("chain-100k.yaml:6:3"), "{stderr}");
}

#[test]
fn a_long_cycle_is_reported_shortened() {
    let plan = scratch("cycle-10k.yaml", &chain(10_000, true));
    let (_, diags) = drplan::cli::load_and_build(&plan, None, false);
    let cycles: Vec<_> = diags.iter().filter(|d| d.code == "drplan::plan::cycle").collect();
    assert_eq!(cycles.len(), 1, "one cycle");
    assert_eq!(
        cycles[0].message,
        "dependency cycle of 10000 steps: s0 → s1 → s2 → … (9995 more) … → s9998 → s9999 → s0"
    );
    assert!(cycles[0].labels.len() <= 6, "{} labels", cycles[0].labels.len());
    assert!(cycles[0].location().unwrap().contains("cycle-10k.yaml:"), "located");
}
