//! `dr drill PLAN`: shows a drill's outcome (achieved RTO and RPO against the objectives,
//! what failed, where the reports are) and its exit code; `dr drill manifests PLAN`
//! prints what scheduling it in the cluster takes. The drill itself is `crate::ops::drill`.

use std::io::Write as _;
use std::path::Path;

use crate::ops::drill::manifests::{self, DrillManifestOptions};
use crate::ops::drill::report::{self, Measurement};
use crate::ops::drill::{Drilled, Then};

/// What a drill does after verifying the restored service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ThenArg {
    /// Undo the run, leaving the clusters as the drill found them.
    Rollback,
    /// Keep the restored state and release what the run kept for rollback.
    Commit,
}

impl From<ThenArg> for Then {
    fn from(then: ThenArg) -> Then {
        match then {
            ThenArg::Rollback => Then::Rollback,
            ThenArg::Commit => Then::Commit,
        }
    }
}

fn line(name: &str, m: &Measurement) -> String {
    let achieved = m.achieved_seconds.map(report::seconds).unwrap_or_else(|| "not measured".into());
    let objective = m.objective_seconds.map(report::seconds).map(|o| format!(" (objective {o})")).unwrap_or_default();
    format!("{name}: {achieved}{objective}")
}

/// Prints the drill's outcome; exit 0 when every step, check and objective passed.
/// With `json`, the last line on standard output is a `drill` event for machines.
pub fn show(drilled: &Drilled, json: bool) -> i32 {
    let report = &drilled.report;
    eprintln!("\nDrill of {}: {}", report.plan, if report.passed { "passed" } else { "FAILED" });
    eprintln!("  {}", line("RTO", &report.rto));
    eprintln!("  {}", line("RPO", &report.rpo));
    for failure in report.failures() {
        eprintln!("  ✗ {}", crate::diag::escape(&failure));
    }
    if let Some(paths) = &drilled.paths {
        eprintln!("Reports: {}, {}, {}", paths.junit.display(), paths.json.display(), paths.markdown.display());
    }
    if json {
        let paths = drilled.paths.as_ref().map(
            |p| serde_json::json!({"junit": p.junit, "json": p.json, "markdown": p.markdown, "history": p.history}),
        );
        let event = serde_json::json!({
            "time": crate::checkpoint::now_rfc3339(), "event": "drill", "run": report.run_id,
            "status": if report.passed { "passed" } else { "failed" },
            "rtoSeconds": report.rto.achieved_seconds, "rpoSeconds": report.rpo.achieved_seconds,
            "reports": paths,
        });
        let _ = writeln!(std::io::stdout(), "{event}");
    }
    i32::from(!report.passed)
}

/// `dr drill manifests PLAN`: the YAML stream for `kubectl apply -f -`.
pub fn print_manifests(plan_path: &Path, plan_name: &str, options: &DrillManifestOptions) -> Result<i32, String> {
    manifests::check_schedule(&options.schedule)?;
    let text = std::fs::read_to_string(plan_path).map_err(|e| format!("reading {}: {e}", plan_path.display()))?;
    let file_name = plan_path.file_name().and_then(|f| f.to_str()).unwrap_or("plan.yaml");
    let objects = manifests::manifests(file_name, &text, plan_name, options);
    if options.derived.is_none() {
        println!(
            "# The ServiceAccount is bound to ClusterRole {}; create it from the plan's needs with `dr rbac`.",
            options.role
        );
    }
    print!("{}", manifests::to_yaml_stream(&objects));
    Ok(0)
}
