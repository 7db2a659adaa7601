//! The `dr` binary end to end: exit codes, diagnostics with locations, hostile input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn dr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dr")).args(args).env("NO_COLOR", "1").output().expect("dr runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

#[test]
fn validate_prints_every_problem_with_file_line_and_column() {
    let path = fixture("invalid/references.yaml");
    let out = dr(&["validate", &path]);
    assert_eq!(out.status.code(), Some(1));
    let all = text(&out);
    for location in [":13:9]", ":18:19]", ":23:5]", ":27:5]"] {
        assert!(all.contains(location), "missing {location} in:\n{all}");
    }
    assert!(all.contains("did you mean `down`?"), "{all}");
    let marked = std::fs::read_to_string(&path).unwrap().matches("# <- ").count();
    assert!(all.contains(&format!("{marked} problems")), "expected {marked} problems in:\n{all}");
}

#[test]
fn validate_accepts_a_sound_plan() {
    let path = scratch("sound.yaml");
    std::fs::write(
        &path,
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: ok}\nclusters: [{name: c, namespace: kafka}]\nsteps:\n  - id: restore\n    restoreClaims:\n      workload: {kind: StatefulSet, name: es-kafka}\n      claims: [data-es-kafka-0]\n      snapshotClass: csi-rbdplugin-snapclass\n",
    )
    .unwrap();
    let out = dr(&["validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("valid (10 steps)"), "{}", text(&out));
}

fn refused(path: &Path, code: &str) {
    let out = dr(&["validate", path.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains(code), "expected {code} in:\n{all}");
    assert!(!all.contains("panicked"), "{all}");
}

#[test]
fn alias_bomb_is_refused() {
    let mut bomb = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb += &format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n");
    }
    let path = scratch("bomb.yaml");
    std::fs::write(&path, bomb).unwrap();
    refused(&path, "drplan::input::too_many_nodes");
}

#[test]
fn deep_nesting_is_refused() {
    let path = scratch("deep.yaml");
    std::fs::write(&path, format!("steps: {}\n", "[".repeat(200_000))).unwrap();
    refused(&path, "drplan::input::too_deep");
    let block: String = (0..200).map(|i| format!("{}k:\n", "  ".repeat(i))).collect();
    std::fs::write(&path, block).unwrap();
    refused(&path, "drplan::input::too_deep");
}

#[test]
fn a_100_mb_file_is_refused_before_reading() {
    let path = scratch("huge.yaml");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(100 << 20).unwrap(); // sparse: costs no disk and no memory
    refused(&path, "drplan::input::too_large");
}

#[test]
fn binary_garbage_is_refused() {
    let path = scratch("garbage.bin");
    let garbage: Vec<u8> = (0..65_536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, garbage).unwrap();
    refused(&path, "drplan::input::not_text");
    std::fs::write(&path, b"apiVersion: drplan.dev/v1alpha1\n\0\0\0kind: DrPlan\n").unwrap();
    refused(&path, "drplan::input::not_text");
}

#[test]
fn several_documents_are_refused() {
    let path = scratch("two.yaml");
    std::fs::write(&path, "a: 1\n---\nb: 2\n").unwrap();
    refused(&path, "drplan::yaml::syntax");
}

#[test]
fn graph_dot_is_accepted_by_graphviz() {
    let plan = fixture("invalid/../cluster/../../../plans/ebs-cassandra-restore.yaml");
    let cluster = fixture("../../plans/ebs-cassandra-restore");
    let out = dr(&["graph", &plan, "--cluster-from", &cluster, "--format", "dot"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut dot = Command::new("dot")
        .args(["-Tsvg", "-o", "/dev/null"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphviz `dot` must be installed (`scripts/test` and `.ci/run` install it: apt-get install graphviz)");
    dot.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let result = dot.wait_with_output().unwrap();
    assert!(result.status.success(), "dot rejected the graph: {}", String::from_utf8_lossy(&result.stderr));
}

#[test]
fn schema_command_prints_the_schema() {
    let out = dr(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(schema["title"], "drplan DR plan");
}

/// Every example plan is valid, so its intent-level graph (no cluster facts) must draw too;
/// `efs-failback` hooks steps into its intent's phases from both sides (`after:` one
/// sub-step, `before:` another), which collapsed into one node once read as a cycle.
#[test]
fn the_intent_level_graph_of_every_example_plan_draws_without_errors() {
    let plans = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut seen = 0;
    for entry in std::fs::read_dir(&plans).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        seen += 1;
        let out = dr(&["graph", &path.display().to_string()]);
        assert_eq!(out.status.code(), Some(0), "dr graph {}: {}", path.display(), text(&out));
    }
    assert!(seen >= 8, "found only {seen} example plans");
}
