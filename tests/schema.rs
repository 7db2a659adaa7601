//! The checked-in JSON Schema is current, accepts the example plans and rejects bad ones.

use std::path::{Path, PathBuf};

use drplan::lang::yaml::{Limits, parse_str, read_file};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example_plans() -> Vec<PathBuf> {
    let mut plans: Vec<PathBuf> = std::fs::read_dir(root().join("plans"))
        .expect("plans/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    plans.sort();
    plans
}

fn validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join(drplan::lang::schema::SCHEMA_PATH)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

#[test]
fn checked_in_schema_is_current() {
    let path = root().join(drplan::lang::schema::SCHEMA_PATH);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = drplan::lang::schema::plan_schema_json();
    assert!(
        checked_in == generated,
        "{} is stale: regenerate it with `cargo run -- schema > {}`",
        path.display(),
        drplan::lang::schema::SCHEMA_PATH
    );
}

#[test]
fn example_plans_start_with_the_schema_modeline_and_conform() {
    let plans = example_plans();
    assert!(plans.len() >= 6, "expected the six example plans, found {plans:?}");
    let validator = validator();
    for plan in plans {
        let text = std::fs::read_to_string(&plan).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=../schemas/drplan.schema.json"),
            "{} must start with the schema modeline",
            plan.display()
        );
        let doc = read_file(&plan, Limits::PLAN).unwrap().documents.remove(0).to_json();
        let errors: Vec<String> =
            validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", plan.display());
    }
}

#[test]
fn schema_rejects_what_validate_rejects() {
    let validator = validator();
    let base = "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: x}\nclusters: [{name: a}]\nsteps:\n";
    let bad_steps = [
        "  - {id: a, scael: {workload: {kind: StatefulSet, name: s}}}",
        "  - {id: a, scale: {workload: {kind: StatefulSet, name: s}, replica: 0}}",
        "  - {id: a, scale: {workload: {kind: DaemonSet, name: s}}}",
        "  - {id: a, resizePvc: {claim: c, size: 4GB}}",
        "  - {scale: {workload: {kind: StatefulSet, name: s}}}",
        "  - {id: a, scale: {workload: {kind: StatefulSet, name: s}}, saveObject: {object: {apiVersion: v1, kind: ConfigMap, name: c}}}",
    ];
    let good = format!("{base}  - {{id: a, after: b, scale: {{workload: {{kind: StatefulSet, name: s}}}}}}\n");
    let doc = parse_str("good.yaml", &good, Limits::PLAN).unwrap().documents.remove(0).to_json();
    assert!(validator.is_valid(&doc), "a valid plan is accepted");
    for step in bad_steps {
        let text = format!("{base}{step}\n");
        let doc = parse_str("bad.yaml", &text, Limits::PLAN).unwrap().documents.remove(0).to_json();
        assert!(!validator.is_valid(&doc), "schema accepted: {step}");
    }
}
