//! The example plans in `plans/` validate against their example clusters, and their
//! graphs have the shape the runbooks need.

use std::path::{Path, PathBuf};

use drplan::graph::StepGraph;
use drplan::steps::Action;

fn plans() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let mut plans: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    plans.sort();
    plans
}

fn build(name: &str) -> StepGraph {
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans").join(format!("{name}.yaml"));
    let cluster = plan.with_extension("");
    let (built, diags) = drplan::cli::load_and_build(&plan, Some(&cluster), false);
    assert!(!diags.has_errors(), "{name}: {:#?}", diags.iter().map(|d| d.to_string()).collect::<Vec<_>>());
    built.expect("graph").1
}

#[test]
fn all_example_plans_validate_with_their_cluster_manifests() {
    let plans = plans();
    assert_eq!(plans.len(), 10, "{plans:?}");
    for plan in plans {
        let name = plan.file_stem().unwrap().to_str().unwrap().to_string();
        let graph = build(&name);
        assert!(graph.len() > 1, "{name} expands into steps");
        assert!(graph.steps().all(|(_, s)| s.action().is_some()), "{name}: every intent expanded");
    }
}

fn find(graph: &StepGraph, id: &str) -> petgraph::graph::NodeIndex {
    graph.index_of(id).unwrap_or_else(|| panic!("no step {id}"))
}

/// Plan 1: three per-replica chains (snapshot, ready, retain), each starting after the
/// scale-down, meeting at one barrier that checks every claim before the first deletion;
/// then per claim a deletion and a restore, joined at the scale-back.
#[test]
fn ebs_plan_has_three_parallel_replica_chains_and_one_barrier_before_deleting() {
    let graph = build("ebs-cassandra-restore");
    let gone = find(&graph, "restore-cassandra/pods-gone");
    let safe = find(&graph, "restore-cassandra/safe-to-delete");
    let back = find(&graph, "restore-cassandra/scale-back");
    let down = find(&graph, "restore-cassandra/scale-down");
    assert!(graph.ancestors(gone).contains(&down));
    let heads: Vec<_> = graph.successors(gone).collect();
    assert_eq!(heads.len(), 3, "one chain per replica starts after pods-gone");
    let retains: Vec<_> = graph.predecessors(safe).collect();
    assert_eq!(retains.len(), 3, "the chains meet at the barrier");
    let mut chains = Vec::new();
    for retain in retains {
        let chain: Vec<_> =
            graph.ancestors(retain).into_iter().filter(|a| !graph.ancestors(gone).contains(a) && *a != gone).collect();
        let claim = match graph.step(retain).action() {
            Some(Action::SetReclaimPolicy(p)) => p.claim.clone(),
            other => panic!("chain ends with {other:?}"),
        };
        assert_eq!(chain.len(), 2, "snapshot and ready before the retain of {claim}");
        chains.push((claim, chain));
    }
    for (i, (a, chain_a)) in chains.iter().enumerate() {
        for (b, chain_b) in &chains[i + 1..] {
            assert!(chain_a.iter().all(|n| !chain_b.contains(n)), "{a} and {b} share steps");
        }
    }
    let mut claims: Vec<_> = chains.iter().map(|(c, _)| c.as_str()).collect();
    claims.sort();
    assert_eq!(claims, ["cassandra-data-cassandra-0", "cassandra-data-cassandra-1", "cassandra-data-cassandra-2"]);
    let tails: Vec<_> = graph.predecessors(back).collect();
    assert_eq!(tails.len(), 3, "the restores join at scale-back");
    for tail in tails {
        assert!(matches!(graph.step(tail).action(), Some(Action::RestorePvc(_))));
        let deletes: Vec<_> = graph.predecessors(tail).collect();
        assert_eq!(deletes.len(), 1);
        assert!(matches!(graph.step(deletes[0]).action(), Some(Action::DeletePvc(_))));
        assert_eq!(graph.predecessors(deletes[0]).collect::<Vec<_>>(), [safe], "each deletion waits for the barrier");
    }
    let (path, _) = graph.critical_path();
    assert_eq!(path.first(), Some(&down));
    assert_eq!(graph.step(*path.last().unwrap()).id, "restore-cassandra/pods-ready");
}

/// Plan 2: the operator goes down before the StatefulSet and comes back after it.
#[test]
fn kafka_plan_brackets_the_statefulset_with_its_operator() {
    let graph = build("rook-ceph-kafka-restore");
    let ids: Vec<_> = graph.steps().map(|(_, s)| s.id.clone()).collect();
    let by_suffix = |suffix: &str| {
        let id = ids.iter().find(|i| i.ends_with(suffix)).unwrap_or_else(|| panic!("no step ending {suffix}"));
        find(&graph, id)
    };
    let operator_down = by_suffix("/operator-down");
    let sts_down = by_suffix("/scale-down");
    let sts_back = by_suffix("/scale-back");
    let operator_up = by_suffix("/operator-up");
    assert!(graph.ancestors(sts_down).contains(&operator_down));
    assert!(graph.ancestors(operator_up).contains(&sts_back));
}

/// The Argo CD example: the Application is paused before the database stops and
/// resumed only once it is Ready again, and the pause names the policy it removes.
#[test]
fn argocd_plan_pauses_self_heal_around_the_whole_restore() {
    let graph = build("argocd-postgres-restore");
    let pause = find(&graph, "pause-argocd/pause");
    let resume = find(&graph, "pause-argocd/resume");
    let first_stop = find(&graph, "restore-postgres/scale-down");
    let ready = find(&graph, "restore-postgres/pods-ready");
    assert!(graph.ancestors(first_stop).contains(&pause), "paused before the database stops");
    assert!(graph.ancestors(resume).contains(&ready), "resumed after the database is Ready");
    for (_, step) in graph.steps().filter(|(_, s)| s.entry == "restore-postgres") {
        let index = find(&graph, &step.id);
        assert!(graph.ancestors(index).contains(&pause), "{} runs paused", step.id);
        assert!(graph.ancestors(resume).contains(&index), "{} runs before the resume", step.id);
    }
    let Some(Action::PauseReconciler(p)) = graph.step(pause).action() else { panic!("a pauseReconciler step") };
    assert_eq!(p.object.kind, "Application");
    assert_eq!(p.patch, serde_json::json!({ "spec": { "syncPolicy": { "automated": null } } }));
}

/// Plan 3: the static PV is pinned to the disk's zone and retained.
#[test]
fn aks_plan_binds_a_zonal_static_pv() {
    let graph = build("aks-disk-rebind");
    let bind = graph.steps().find_map(|(_, s)| match s.action() {
        Some(Action::BindStaticPv(p)) => Some(p.clone()),
        _ => None,
    });
    let bind = bind.expect("a bindStaticPv step");
    assert_eq!(bind.claim, "restoredpvc");
    assert_eq!(bind.volume.zone.as_deref(), Some("westeurope-1"));
}

/// Plan 5: explicit steps slot into the failback intent with `after:`/`before:` on its
/// sub-steps: the writers stop after the initial sync and before the cutover.
#[test]
fn efs_failback_stops_writers_between_sync_and_cutover() {
    let graph = build("efs-failback");
    let synced = find(&graph, "efs-failback/primary-synced");
    let stop = find(&graph, "stop-dr-writers");
    let final_sync = find(&graph, "final-sync");
    let cutover = find(&graph, "efs-failback/cutover");
    assert!(graph.ancestors(stop).contains(&synced));
    let before_cutover = graph.ancestors(cutover);
    assert!(before_cutover.contains(&stop) && before_cutover.contains(&final_sync));
    assert!(!graph.ancestors(synced).contains(&stop), "the writers keep serving during the initial sync");
}

/// The grow plan: each resize is followed by its fallback chain, every fallback step
/// marked as such (also after saving and reading back, as resume does), and the next
/// claim's resize waits for the whole previous chain.
#[test]
fn grow_plan_hangs_a_marked_fallback_chain_off_each_resize() {
    let graph = build("ebs-cassandra-grow");
    for ordinal in 0..3 {
        let resize = find(&graph, &format!("grow-{ordinal}"));
        assert_eq!(graph.step(resize).fallback_for, None, "the resize itself always runs");
        let chain: Vec<_> =
            graph.steps().filter(|(_, s)| s.entry == format!("grow-{ordinal}") && s.fallback_for.is_some()).collect();
        assert_eq!(
            chain.len(),
            10,
            "scale down, wait, snapshot, wait, retain, check, delete, restore, scale back, wait"
        );
        for (index, step) in &chain {
            assert_eq!(step.fallback_for.as_deref(), Some(format!("grow-{ordinal}").as_str()));
            assert!(graph.ancestors(*index).contains(&resize), "{} runs after the resize", step.id);
        }
    }
    let next = find(&graph, "grow-1");
    assert!(graph.ancestors(next).contains(&find(&graph, "grow-0/pods-ready")));

    let reread = drplan::graph::saved::from_json(&drplan::graph::saved::to_json(&graph)).expect("saved graph reads");
    for (_, step) in graph.steps() {
        let again = reread.step(reread.index_of(&step.id).expect("same steps"));
        assert_eq!(again.fallback_for, step.fallback_for, "{}", step.id);
    }
}

/// Plan 9: per claim a chain snapshot → completed → copy → completed → volume → static
/// PV → bound, the copy made in the DR region from the primary's, each static PV on the
/// volume its chain creates and pinned to that volume's zone; the DR start after all.
#[test]
fn ebs_cross_region_plan_chains_each_claim_from_snapshot_to_static_pv() {
    let graph = build("ebs-cross-region");
    let before = |a: &str, b: &str| graph.ancestors(find(&graph, b)).contains(&find(&graph, a));
    for n in 0..3 {
        let chain = ["snapshot", "snapshot-{n}-completed", "copy", "copy-{n}-completed", "volume", "bind", "bound"]
            .map(|s| if s.contains("{n}") { s.replace("{n}", &n.to_string()) } else { format!("{s}-{n}") });
        for pair in chain.windows(2) {
            assert!(before(&pair[0], &pair[1]), "{} runs before {}", pair[0], pair[1]);
        }
        assert!(before(&format!("bound-{n}"), "start-dr"));
        assert!(before("wait-primary-stopped", &format!("snapshot-{n}")));
        let copy = graph.step(find(&graph, &format!("copy-{n}")));
        let Some(Action::EbsCopySnapshot(p)) = copy.action() else { panic!("copy-{n} copies") };
        assert_eq!((p.source_region.as_str(), p.region.as_str()), ("us-east-1", "us-west-2"));
        assert!(p.encrypted && p.kms_key_id.is_some(), "the copy is encrypted with a DR-region key");
        let volume = graph.step(find(&graph, &format!("volume-{n}")));
        let Some(Action::EbsCreateVolume(v)) = volume.action() else { panic!("volume-{n} creates a volume") };
        let bind = graph.step(find(&graph, &format!("bind-{n}")));
        let Some(Action::BindStaticPv(b)) = bind.action() else { panic!("bind-{n} binds") };
        assert_eq!(b.volume.volume_from_step.as_deref(), Some(format!("volume-{n}").as_str()));
        assert_eq!(b.volume.zone.as_deref(), Some(v.availability_zone.as_str()));
        assert_eq!(b.claim, format!("cassandra-data-cassandra-{n}"));
        assert_eq!(bind.cluster, "dr");
    }
}

/// A static PV pinned to another zone than the one its volume is created in could never
/// be attached: `dr validate` refuses the plan at the PV's `volume:`.
#[test]
fn a_static_pv_in_another_zone_than_its_created_volume_is_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans");
    let text = std::fs::read_to_string(dir.join("ebs-cross-region.yaml")).unwrap();
    let bind_0 = "volumeFromStep: volume-0\n        size: 2Gi\n        # Written as node affinity: the pod of cassandra-0 must run where its volume is.\n        zone: us-west-2";
    let wrong = text.replacen(&format!("{bind_0}a"), &format!("{bind_0}b"), 1);
    assert_ne!(wrong, text, "the variant changes the zone of bind-0");
    let plan = std::env::temp_dir().join(format!("drplan-zone-mismatch-{}.yaml", std::process::id()));
    std::fs::write(&plan, wrong).unwrap();
    let (_, diags) = drplan::cli::load_and_build(&plan, Some(&dir.join("ebs-cross-region")), false);
    let messages: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("pinned to zone us-west-2b but step `volume-0` creates its volume in us-west-2a")),
        "{messages:#?}"
    );
}
