//! `dr plan`: what a plan would do to the live clusters, for review; and saved plans,
//! which `dr apply` executes only if nothing they depend on changed since.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::apply::{self, TargetArgs};
use crate::checkpoint;
use crate::lang;
use crate::state::markdown;
use crate::state::output::PlanOutput;
use crate::state::{self, Fingerprint};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    Text,
    /// The versioned document of `schemas/plan-output.schema.json`.
    Json,
    /// One pull-request comment for review (under GitHub's 65,536-character limit).
    Markdown,
}

/// A reviewed plan, saved with `dr plan --out`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedPlan {
    pub kind: String,
    pub format: u32,
    pub plan_path: PathBuf,
    pub plan_name: String,
    pub plan_digest: String,
    pub accept_data_loss: bool,
    /// The expanded steps ([`crate::graph::saved`]).
    pub graph: Value,
    pub clusters: BTreeMap<String, Option<String>>,
    /// Every object read, at the version the plan was computed from.
    pub fingerprints: Vec<Fingerprint>,
}

pub const SAVED_PLAN_KIND: &str = "DrplanSavedPlan";

/// Exit codes like `terraform plan -detailed-exitcode`: 0 no changes, 1 error, 2 changes.
/// With `--format markdown`, a plan that cannot be computed still prints a review that
/// says so, for the pull request.
pub async fn plan(
    plan_path: &Path,
    target_args: &TargetArgs,
    namespace: Option<&str>,
    out: Option<&Path>,
    format: PlanFormat,
) -> Result<i32, String> {
    let result = plan_or_diagnostics(plan_path, target_args, namespace, out, format).await;
    if format == PlanFormat::Markdown {
        let message = match &result {
            Err(message) => Some(message.clone()),
            Ok(Err(diags)) => Some(diags.iter().map(|d| d.render(false)).collect::<Vec<_>>().join("\n")),
            Ok(Ok(_)) => None,
        };
        if let Some(message) = message {
            print!("{}", markdown::render_error(&plan_path.display().to_string(), &message));
        }
    }
    result.map(|r| r.unwrap_or(1))
}

async fn plan_or_diagnostics(
    plan_path: &Path,
    target_args: &TargetArgs,
    namespace: Option<&str>,
    out: Option<&Path>,
    format: PlanFormat,
) -> Result<Result<i32, crate::diag::Diagnostics>, String> {
    let (loaded, diags) = lang::load_plan(plan_path);
    super::print_diagnostics(&diags);
    let Some(mut loaded) = loaded.filter(|_| !diags.has_errors()) else { return Ok(Err(diags)) };
    if let Some(ns) = namespace {
        let [only] = loaded.plan.clusters.as_mut_slice() else {
            return Err("-n/--namespace applies to one-cluster plans; name namespaces in the plan instead".into());
        };
        only.namespace = Some(ns.to_string());
    }
    let clusters: BTreeMap<String, Option<String>> =
        loaded.plan.clusters.iter().map(|c| (c.name.value.clone(), c.context.clone())).collect();
    let targets = apply::connect(plan_path, &clusters, target_args).await?;
    let prepared = apply::prepare(&loaded, &targets).await?;
    let report = prepared.report();
    let rpo = loaded.plan.objectives.as_ref().and_then(|o| o.rpo.as_ref()).map(|r| r.value.0);
    let cloud = crate::cloud::report::read(&prepared.graph, rpo, &targets.cloud).await;
    match format {
        PlanFormat::Text => {
            print_text(&report)?;
            cloud.notes.iter().for_each(|n| eprintln!("{}", crate::diag::escape(n)));
        }
        PlanFormat::Json => {
            let output = PlanOutput::new(&report, loaded.plan.objectives.as_ref());
            println!("{}", serde_json::to_string_pretty(&output).map_err(|e| e.to_string())?);
        }
        PlanFormat::Markdown => {
            let output = PlanOutput::new(&report, loaded.plan.objectives.as_ref());
            let context = markdown::ReviewContext {
                plan_path: &plan_path.display().to_string(),
                state: state_source(plan_path, &clusters, &targets, target_args),
                now: std::time::SystemTime::now(),
            };
            print!("{}", markdown::render(&report, &output, &context));
        }
    }
    if let Some(out) = out {
        let bytes = std::fs::read(plan_path).map_err(|e| format!("reading {}: {e}", plan_path.display()))?;
        let saved = SavedPlan {
            kind: SAVED_PLAN_KIND.into(),
            format: 1,
            plan_path: plan_path.to_path_buf(),
            plan_name: loaded.plan.name().to_string(),
            plan_digest: checkpoint::digest(&bytes),
            accept_data_loss: loaded.plan.accept_data_loss,
            graph: crate::graph::saved::to_json(&prepared.graph),
            clusters,
            fingerprints: prepared.live.fingerprints(),
        };
        let mut text = serde_json::to_vec_pretty(&saved).map_err(|e| e.to_string())?;
        text.push(b'\n');
        std::fs::write(out, text).map_err(|e| format!("writing {}: {e}", out.display()))?;
        eprintln!("Saved the plan to {}; apply exactly this with `dr apply {}`.", out.display(), out.display());
    }
    cloud.warnings.iter().for_each(|w| eprintln!("warning: {w}"));
    let code = if !report.blocked().is_empty() {
        1
    } else if report.to_do() == 0 {
        0
    } else {
        2
    };
    // The process ends right after this: freeing every object read (a tenth of the run
    // time for a thousand StatefulSets) would only delay the exit.
    std::mem::forget(prepared);
    Ok(Ok(code))
}

/// Which state the plan was computed against, for the review: the dumps `--sim` loaded
/// (the directories [`apply::connect`] reads) or the live contexts.
fn state_source(
    plan_path: &Path,
    clusters: &BTreeMap<String, Option<String>>,
    targets: &apply::Targets,
    args: &TargetArgs,
) -> markdown::StateSource {
    if args.sim {
        let dir = plan_path.with_extension("");
        let mut dirs: Vec<PathBuf> = clusters
            .keys()
            .map(|name| dir.join(name))
            .map(|sub| if sub.is_dir() { sub } else { dir.clone() })
            .collect();
        dirs.dedup();
        return markdown::StateSource::dump(dirs);
    }
    markdown::StateSource::Live(targets.contexts.iter().map(|(c, ctx)| (c.clone(), ctx.clone())).collect())
}

/// Streams the review text to standard output (megabytes for a large plan).
fn print_text(report: &state::report::PlanReport<'_>) -> Result<(), String> {
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    report.write_text(&mut stdout).and_then(|()| stdout.flush()).map_err(|e| format!("writing the plan: {e}"))
}

/// Reads a file as a saved plan, if it is one.
pub fn read_saved(path: &Path) -> Option<Result<SavedPlan, String>> {
    let bytes = std::fs::read(path).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    (value.get("kind").and_then(Value::as_str) == Some(SAVED_PLAN_KIND)).then(|| {
        serde_json::from_value(value).map_err(|e| format!("{}: not a readable saved plan: {e}", path.display()))
    })
}

/// Every fingerprinted object that changed since the plan was saved, and how.
pub fn stale_objects(saved: &SavedPlan, now: &state::LiveState) -> Vec<String> {
    let current: BTreeMap<_, _> = now.fingerprints().into_iter().map(|f| (f.key.clone(), f)).collect();
    saved
        .fingerprints
        .iter()
        .filter_map(|then| match current.get(&then.key) {
            None => Some(format!("{} [{}] was deleted", then.key, then.key.cluster)),
            Some(now) if now.uid != then.uid => Some(format!(
                "{} [{}] was deleted and recreated (uid {} → {})",
                then.key, then.key.cluster, then.uid, now.uid
            )),
            Some(now) if now.resource_version != then.resource_version => Some(format!(
                "{} [{}] changed (resourceVersion {} → {})",
                then.key, then.key.cluster, then.resource_version, now.resource_version
            )),
            Some(_) => None,
        })
        .collect()
}
