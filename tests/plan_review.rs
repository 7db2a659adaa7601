//! `dr plan --format markdown` (the pull-request review) and `--format json` (the
//! versioned document): golden files, well-formedness checked by a Markdown parser that
//! is not ours, GitHub's comment size limit, the JSON Schema.
//!
//! The golden files are in tests/golden/; after an intended change of the rendering,
//! regenerate them with `UPDATE_GOLDEN=1 cargo test --test plan_review` and review the diff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use serde_json::Value;

/// GitHub's limit for the body of a comment, in characters.
const GITHUB_COMMENT_LIMIT: usize = 65_536;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `dr` in the repository root with a state directory of its own.
fn dr(args: &[&str]) -> Output {
    let state = std::env::temp_dir().join(format!("drplan-review-{}-{}", std::process::id(), args.join("_").len()));
    let out = Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(args)
        .current_dir(root())
        .env("DRPLAN_STATE_DIR", &state)
        .env("NO_COLOR", "1")
        .output()
        .expect("dr runs");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("UTF-8 output"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The age of a state dump depends on when the files were checked out.
fn normalise(markdown: &str) -> String {
    markdown
        .lines()
        .map(|line| match (line.find(", as of "), line.find(" old, from the files' modification times)")) {
            (Some(start), Some(end)) if start < end => {
                format!("{}, as of DATE (AGE{}", &line[..start], &line[end..])
            }
            _ => line.to_string(),
        })
        .fold(String::new(), |mut out, line| {
            let _ = writeln!(out, "{line}");
            out
        })
}

fn check_golden(name: &str, actual: &str) {
    let path = root().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual).unified_diff().header("golden", "now").to_string();
        panic!(
            "{} differs from the rendering (regenerate with UPDATE_GOLDEN=1 cargo test --test plan_review):\n{diff}",
            path.display()
        );
    }
}

/// What a Markdown parser (pulldown-cmark, with GitHub's tables) finds in a review.
#[derive(Default, Debug)]
struct Parsed {
    mermaid_blocks: Vec<String>,
    diff_blocks: usize,
    tables: usize,
    details_open: usize,
    details_closed: usize,
    /// Raw HTML other than the tags the renderer writes.
    stray_html: Vec<String>,
}

fn parse(markdown: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut in_code: Option<String> = None;
    let mut code = String::new();
    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH) {
        match event {
            Event::Start(Tag::CodeBlock(kind)) => {
                let info = match kind {
                    CodeBlockKind::Fenced(info) => info.to_string(),
                    CodeBlockKind::Indented => "(indented)".to_string(),
                };
                in_code = Some(info);
                code.clear();
            }
            Event::End(TagEnd::CodeBlock) => match in_code.take().as_deref() {
                Some("mermaid") => parsed.mermaid_blocks.push(code.clone()),
                Some("diff") => parsed.diff_blocks += 1,
                Some("text") => {}
                other => panic!("unexpected code block {other:?}:\n{code}"),
            },
            Event::Text(text) if in_code.is_some() => code.push_str(&text),
            Event::Start(Tag::Table(_)) => parsed.tables += 1,
            Event::Html(html) | Event::InlineHtml(html) => {
                for piece in html.split_inclusive('>') {
                    // Each piece is some text, then at most one tag.
                    let (text, tag) = piece.split_at(piece.find('<').unwrap_or(piece.len()));
                    parsed.details_open += usize::from(tag == "<details>");
                    parsed.details_closed += usize::from(tag == "</details>");
                    let known = ["", "<details>", "</details>", "<summary>", "</summary>"].contains(&tag)
                        || (tag.starts_with("<!-- drplan:")
                            && tag.ends_with(" -->")
                            && !tag[4..tag.len() - 3].contains("--"));
                    if !known || text.contains('<') {
                        parsed.stray_html.push(piece.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    assert!(in_code.is_none(), "a code block is not closed");
    parsed
}

/// Checks that hold for every review.
fn assert_well_formed(markdown: &str) -> Parsed {
    assert!(markdown.chars().count() < GITHUB_COMMENT_LIMIT, "{} characters", markdown.chars().count());
    assert!(markdown.starts_with("<!-- drplan:"), "the marker comes first:\n{markdown}");
    let parsed = parse(markdown);
    assert_eq!(parsed.details_open, parsed.details_closed, "every <details> is closed: {parsed:?}");
    assert!(parsed.stray_html.is_empty(), "raw HTML the renderer did not mean: {:?}", parsed.stray_html);
    for block in &parsed.mermaid_blocks {
        assert!(block.lines().next().is_some_and(|l| l.starts_with("flowchart")), "mermaid block:\n{block}");
    }
    parsed
}

#[test]
fn the_restore_review_matches_its_golden_file_and_is_well_formed() {
    let out = dr(&["plan", "plans/ebs-cassandra-restore.yaml", "--sim", "--format", "markdown"]);
    assert_eq!(out.code, Some(2), "changes: exit 2\n{}", out.stderr);
    let parsed = assert_well_formed(&out.stdout);
    assert_eq!(parsed.tables, 3, "summary, objectives and steps parse as tables");
    assert_eq!(parsed.mermaid_blocks.len(), 1, "one Mermaid flowchart");
    let chart = &parsed.mermaid_blocks[0];
    assert!(chart.contains(" critical\n") && chart.contains(" destructive\n"), "{chart}");
    assert_eq!(parsed.diff_blocks, 9, "a diff per changed object");
    for expected in ["changes, destructive", "6.0 GiB", "[!WARNING]", "| RTO | 45m |", "plans/ebs-cassandra-restore`"] {
        assert!(out.stdout.contains(expected), "{expected:?} missing:\n{}", out.stdout);
    }
    check_golden("ebs-cassandra-restore.md", &normalise(&out.stdout));
}

#[test]
fn a_plan_already_carried_out_reviews_as_no_changes() {
    let out = dr(&["plan", "tests/fixtures/review/no-changes.yaml", "--sim", "--format", "markdown"]);
    assert_eq!(out.code, Some(0), "no changes: exit 0\n{}", out.stderr);
    let parsed = assert_well_formed(&out.stdout);
    assert_eq!(parsed.diff_blocks, 0);
    assert_eq!(parsed.tables, 3, "summary, objectives and steps parse as tables");
    assert!(out.stdout.contains("✅ drplan: no changes"), "{}", out.stdout);
    assert!(!out.stdout.contains("[!WARNING]"), "{}", out.stdout);
    check_golden("no-changes.md", &normalise(&out.stdout));
}

#[test]
fn a_plan_that_does_not_load_reviews_as_an_error() {
    let dir = scratch("broken");
    let plan = dir.join("broken.yaml");
    std::fs::write(&plan, "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: b}\nclusters: [{name: c}]\nsteps:\n  - {id: a, scael: {}}\n").unwrap();
    let out = dr(&["plan", plan.to_str().unwrap(), "--sim", "--format", "markdown"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_well_formed(&out.stdout);
    assert!(out.stdout.contains("❌ drplan: error") && out.stdout.contains("scael"), "{}", out.stdout);
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("drplan-review-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const STATEFULSETS: usize = 150;

/// A cluster of 150 StatefulSets of 3 claims each, and a plan restoring all of them: a
/// review far larger than a comment may be.
fn large_plan() -> PathBuf {
    let dir = scratch("large");
    let mut manifests = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: big}\n---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: ebs-sc}\nprovisioner: ebs.csi.aws.com\nvolumeBindingMode: Immediate\nreclaimPolicy: Delete\nallowVolumeExpansion: true\n---\napiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata: {name: csi-aws-vsc}\ndriver: ebs.csi.aws.com\ndeletionPolicy: Delete\n",
    );
    let mut plan = String::from(
        "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: big}\nclusters: [{name: primary, namespace: big}]\nsteps:\n",
    );
    for i in 0..STATEFULSETS {
        let _ = write!(
            manifests,
            "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db-{i}, namespace: big}}\nspec:\n  replicas: 3\n  podManagementPolicy: Parallel\n  serviceName: db-{i}\n  selector: {{matchLabels: {{app: db-{i}}}}}\n  template:\n    metadata: {{labels: {{app: db-{i}}}}}\n    spec: {{containers: [{{name: db, image: postgres:16}}]}}\n  volumeClaimTemplates:\n    - metadata: {{name: data}}\n      spec: {{accessModes: [ReadWriteOnce], storageClassName: ebs-sc, resources: {{requests: {{storage: 2Gi}}}}}}\n"
        );
        for r in 0..3 {
            let uid = format!("00000000-0000-4000-8000-{:012x}", i * 3 + r);
            let _ = write!(
                manifests,
                "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: data-db-{i}-{r}, namespace: big, uid: {uid}, labels: {{app: db-{i}}}}}\nspec: {{accessModes: [ReadWriteOnce], storageClassName: ebs-sc, volumeName: pv-{i}-{r}, resources: {{requests: {{storage: 2Gi}}}}}}\n---\napiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: pv-{i}-{r}}}\nspec: {{capacity: {{storage: 2Gi}}, accessModes: [ReadWriteOnce], storageClassName: ebs-sc, persistentVolumeReclaimPolicy: Delete, csi: {{driver: ebs.csi.aws.com, volumeHandle: vol-{i:08}{r}}}, claimRef: {{kind: PersistentVolumeClaim, namespace: big, name: data-db-{i}-{r}, uid: {uid}}}}}\n"
            );
        }
        let _ = write!(
            plan,
            "  - id: restore-{i}\n    restoreClaims:\n      workload: {{kind: StatefulSet, name: db-{i}}}\n      claimTemplate: data\n      snapshotClass: csi-aws-vsc\n      resize: 4Gi\n"
        );
    }
    std::fs::create_dir_all(dir.join("big")).unwrap();
    std::fs::write(dir.join("big/cluster.yaml"), manifests).unwrap();
    std::fs::write(dir.join("big.yaml"), plan).unwrap();
    dir.join("big.yaml")
}

#[test]
fn a_huge_review_stays_under_the_comment_limit_and_says_what_it_left_out() {
    let plan = large_plan();
    let out = dr(&["plan", plan.to_str().unwrap(), "--sim", "--format", "markdown"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let parsed = assert_well_formed(&out.stdout);
    assert!(parsed.mermaid_blocks.is_empty(), "a graph this large is not drawn");
    assert!(out.stdout.contains("too large to draw here"), "the left-out graph is mentioned");
    assert!(parsed.diff_blocks > 0, "some diffs are shown");
    assert!(out.stdout.contains("more not shown"), "the left-out diffs are mentioned");
    assert!(out.stdout.contains("more steps; `dr plan` lists them all"), "the step table is capped");
    assert!(out.stdout.contains(&format!("{}.0 GiB", STATEFULSETS * 3 * 2)), "all claims are counted");
}

#[test]
fn the_plan_output_schema_is_current() {
    let path = root().join(drplan::state::output::PLAN_OUTPUT_SCHEMA_PATH);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == drplan::state::output::plan_output_schema_json(),
        "{} is stale: regenerate it with `cargo run -- schema plan-output > {}`",
        path.display(),
        drplan::state::output::PLAN_OUTPUT_SCHEMA_PATH
    );
}

#[test]
fn plan_json_conforms_to_its_schema_with_counts_as_numbers() {
    let out = dr(&["plan", "plans/ebs-cassandra-restore.yaml", "--sim", "--format", "json"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    let document: Value = serde_json::from_str(&out.stdout).expect("JSON");
    let text = std::fs::read_to_string(root().join(drplan::state::output::PLAN_OUTPUT_SCHEMA_PATH)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let errors: Vec<String> =
        validator.iter_errors(&document).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(document["schemaVersion"], 1);
    assert_eq!(document["outcome"], "changes");
    let counts = &document["counts"];
    for (key, expected) in
        [("create", 3), ("change", 3), ("replace", 3), ("delete", 0), ("destructiveSteps", 3), ("stepsToRun", 20)]
    {
        assert_eq!(counts[key].as_u64(), Some(expected), "counts.{key} in {counts}");
    }
    assert_eq!(document["dataAtRiskGiB"].as_f64(), Some(6.0));
    assert_eq!(document["objectives"]["rtoSeconds"].as_u64(), Some(45 * 60));
    assert_no_snake_case_keys(&document);
}

fn assert_no_snake_case_keys(value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                // Object contents (before/after) are Kubernetes objects, camelCase too.
                assert!(!key.contains('_'), "key {key:?} is not camelCase");
                assert_no_snake_case_keys(inner);
            }
        }
        Value::Array(items) => items.iter().for_each(assert_no_snake_case_keys),
        _ => {}
    }
}

#[test]
fn the_github_workflow_example_comments_once_per_plan_and_labels_the_pull_request() {
    use drplan::lang::yaml::{Limits, read_file};
    let path = root().join("examples/github/drplan-review.yml");
    let workflow = read_file(&path, Limits::PLAN).expect("the workflow is YAML").documents.remove(0).to_json();
    assert_eq!(workflow["permissions"]["pull-requests"], "write", "{workflow}");
    let steps = workflow["jobs"]["review"]["steps"].as_array().expect("steps");
    let scripts: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    let all = scripts.concat();
    for needed in [
        "dr validate",
        "--sim",
        "--format markdown",
        "--format json",
        "head -n 1",
        "--method PATCH",
        "dr:destructive",
        "dr:no-changes",
        "dr:blocked",
    ] {
        assert!(all.contains(needed), "the workflow does not use {needed:?}");
    }
    // Every script is valid bash once the ${{ }} expressions are substituted.
    for script in scripts {
        let mut plain = String::new();
        let mut rest = script;
        while let Some(start) = rest.find("${{") {
            plain.push_str(&rest[..start]);
            plain.push_str("EXPRESSION");
            rest = rest[start..].find("}}").map_or("", |end| &rest[start + end + 2..]);
        }
        plain.push_str(rest);
        let checked = Command::new("bash").args(["-n", "-c", &plain]).output().expect("bash runs");
        assert!(checked.status.success(), "{}:\n{plain}", String::from_utf8_lossy(&checked.stderr));
    }
}
