//! `dr validate` reports each kind of problem at the line it is about.
//!
//! Every fixture in `tests/fixtures/invalid` marks the lines where diagnostics are
//! expected with a trailing `# <- CODE` comment; the test asserts that exactly those
//! (line, code) pairs are reported, all in one run.

mod marked_fixtures;

use std::path::Path;

#[test]
fn every_fixture_reports_exactly_its_marked_problems() {
    let files = marked_fixtures::fixtures_in("invalid");
    assert!(files.len() >= 10, "fixtures missing: {files:?}");
    let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cluster");
    marked_fixtures::assert_each_reports_its_marks(&files, Some(&cluster));
}

#[test]
fn a_cycle_is_printed_as_a_chain() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid/cycle.yaml");
    let (_, diags) = drplan::cli::load_and_build(&path, None, false);
    let cycle = diags.iter().find(|d| d.code == "drplan::plan::cycle").expect("cycle reported");
    assert_eq!(cycle.message, "dependency cycle: save → delete → restore → save");
    assert_eq!(cycle.labels.len(), 3, "one label per after: in the cycle");
}

/// Without cluster facts the checks that need them cannot run: `dr validate` says which
/// were skipped and why, as a warning, and still exits 0 for a valid plan.
#[test]
fn checks_skipped_without_cluster_facts_are_named() {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/ebs-cassandra-restore.yaml");
    let (_, diags) = drplan::cli::load_and_build(&plan, None, false);
    let skipped: Vec<_> = diags.iter().filter(|d| d.code == drplan::graph::CHECKS_SKIPPED).collect();
    assert_eq!(skipped.len(), 1, "{diags:?}");
    assert!(!skipped[0].is_error());
    for check in ["claimTemplate", "restore sizes", "uses the claims", "reclaim policies"] {
        assert!(skipped[0].message.contains(check), "names `{check}`: {}", skipped[0].message);
    }
    assert!(skipped[0].help.as_deref().is_some_and(|h| h.contains("--cluster-from")));
    assert_eq!(skipped[0].line(), Some(51), "labelled at the intent");

    let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/ebs-cassandra-restore");
    let (_, with_facts) = drplan::cli::load_and_build(&plan, Some(&cluster), false);
    assert!(with_facts.iter().all(|d| d.code != drplan::graph::CHECKS_SKIPPED), "nothing skipped with facts");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dr"))
        .args(["validate", plan.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .output()
        .expect("dr runs");
    assert_eq!(out.status.code(), Some(0), "a warning does not change the exit code");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("checks that need cluster facts were skipped"), "{stderr}");
}

/// A restore from a snapshot the plan does not take is fine when the cluster facts hold
/// that snapshot, ready; refused when it is there but not ready.
#[test]
fn a_restore_from_an_existing_ready_snapshot_is_accepted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = root.join("tests/fixtures/outcomes/postgres-old-backup.yaml");
    let restore_problems = |ready: bool| {
        let dir = std::env::temp_dir().join(format!("drplan-validate-snapshot-{}-{ready}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(root.join("tests/fixtures/cluster/postgres/cluster.yaml"), dir.join("cluster.yaml")).unwrap();
        let snapshot = format!(
            "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata: {{name: old-backup, namespace: db}}\n\
             spec: {{source: {{persistentVolumeClaimName: data-postgres-0}}}}\nstatus: {{readyToUse: {ready}}}\n"
        );
        std::fs::write(dir.join("snapshot.yaml"), snapshot).unwrap();
        let (_, diags) = drplan::cli::load_and_build(&plan, Some(&dir), false);
        std::fs::remove_dir_all(&dir).unwrap();
        diags
            .iter()
            .filter(|d| d.code == "drplan::safety::restore_source_missing")
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(restore_problems(true), Vec::<String>::new());
    let not_ready = restore_problems(false);
    assert_eq!(not_ready.len(), 1, "{not_ready:?}");
    assert!(not_ready[0].contains("not readyToUse"), "{not_ready:?}");
}
