//! A drill's report: the document (JSON, `schemas/drill-report.schema.json`), JUnit XML
//! (one test case per step, verification and objective, so CI systems show drills
//! natively), Markdown, and the history file (one JSON line per drill) that gives the
//! trend of achieved RTOs.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where the drill report schema is checked in.
pub const DRILL_REPORT_SCHEMA_PATH: &str = "schemas/drill-report.schema.json";
/// Version of the report document; bumped on incompatible changes.
pub const DRILL_REPORT_VERSION: u32 = 1;
/// How many drills of the history the Markdown report shows.
pub const HISTORY_SHOWN: usize = 10;

/// The result of one drill.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    pub version: u32,
    pub plan: String,
    pub plan_path: String,
    /// The apply run the drill made (`dr runs` lists it).
    pub run_id: String,
    /// The run that undid it, when the drill rolled back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_run_id: Option<String>,
    /// What the drill did after verifying: `rollback` or `commit`.
    pub then: String,
    /// What the drill ran against (contexts, or `sim:` URLs).
    pub target: String,
    pub started_at: String,
    pub finished_at: String,
    /// Final status of the apply run.
    pub run_status: String,
    /// Final status of the rollback or commit; `skipped` when it did not happen.
    pub then_status: String,
    /// Whether every step, verification and objective passed.
    pub passed: bool,
    pub rto: Measurement,
    pub rpo: Measurement,
    pub steps: Vec<StepResult>,
    pub verification: Vec<CheckResult>,
    /// Earlier drills of this plan from the history, oldest first, this one last.
    pub history: Vec<HistoryEntry>,
}

/// An achieved RTO or RPO against the plan's objective.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// What was achieved, in seconds; absent when it could not be measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub achieved_seconds: Option<f64>,
    /// The plan's objective, in seconds; absent when the plan sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective_seconds: Option<f64>,
    /// `met`, `missed`, `notMeasured` or `noObjective`.
    pub verdict: Verdict,
    /// How it was measured, or why it could not be.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Met,
    Missed,
    NotMeasured,
    #[default]
    NoObjective,
}

impl Measurement {
    /// Compares what was achieved with the objective.
    pub fn judge(achieved: Option<f64>, objective: Option<f64>, detail: String) -> Measurement {
        let verdict = match (achieved, objective) {
            (_, None) => Verdict::NoObjective,
            (None, Some(_)) => Verdict::NotMeasured,
            (Some(a), Some(o)) if a <= o => Verdict::Met,
            (Some(_), Some(_)) => Verdict::Missed,
        };
        Measurement { achieved_seconds: achieved, objective_seconds: objective, verdict, detail }
    }

    /// Why the objective failed ("RTO missed by 12.3s: achieved 42.3s, objective 30s").
    pub fn failure(&self, name: &str) -> Option<String> {
        match (self.verdict, self.achieved_seconds, self.objective_seconds) {
            (Verdict::Missed, Some(a), Some(o)) => {
                Some(format!("{name} missed by {}: achieved {}, objective {}", seconds(a - o), seconds(a), seconds(o)))
            }
            (Verdict::NotMeasured, _, Some(o)) => {
                Some(format!("{name} could not be measured (objective {}): {}", seconds(o), self.detail))
            }
            _ => None,
        }
    }
}

/// One step of the run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepResult {
    pub id: String,
    pub kind: String,
    pub description: String,
    /// Final status in the run record (`succeeded`, `skipped`, `failed`...).
    pub status: String,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One verification of the restored service.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// One drill in the history file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub plan: String,
    pub run_id: String,
    pub finished_at: String,
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpo_seconds: Option<f64>,
}

impl DrillReport {
    /// Every reason the drill failed: failed steps, verifications and objectives.
    pub fn failures(&self) -> Vec<String> {
        let mut failures: Vec<String> = self
            .steps
            .iter()
            .filter(|s| step_failed(s))
            .map(|s| {
                format!(
                    "step {} {}{}",
                    s.id,
                    s.status,
                    s.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                )
            })
            .collect();
        failures
            .extend(self.verification.iter().filter_map(|c| c.failure.as_ref().map(|f| format!("{}: {f}", c.name))));
        failures.extend(self.rto.failure("RTO"));
        failures.extend(self.rpo.failure("RPO"));
        if self.then_status != "succeeded" && self.then_status != "committed" {
            failures.push(format!("{} {}", self.then, self.then_status));
        }
        failures
    }

    pub fn history_entry(&self) -> HistoryEntry {
        HistoryEntry {
            plan: self.plan.clone(),
            run_id: self.run_id.clone(),
            finished_at: self.finished_at.clone(),
            passed: self.passed,
            rto_seconds: self.rto.achieved_seconds,
            rpo_seconds: self.rpo.achieved_seconds,
        }
    }
}

fn step_failed(step: &StepResult) -> bool {
    !matches!(step.status.as_str(), "succeeded" | "skipped")
}

/// "250ms", "12.3s" or "4m 5.0s".
pub fn seconds(value: f64) -> String {
    if value.abs() < 1.0 && value != 0.0 {
        return format!("{:.0}ms", value * 1000.0);
    }
    if value.abs() < 60.0 {
        return format!("{value:.1}s");
    }
    let minutes = (value / 60.0).trunc();
    format!("{minutes:.0}m {:.1}s", value - minutes * 60.0)
}

/// The JSON Schema of [`DrillReport`], pretty-printed with a trailing newline.
pub fn drill_report_schema_json() -> String {
    let schema = schemars::schema_for!(DrillReport);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    text.push('\n');
    text
}

/// Reads the history file (a missing file is an empty history; unreadable lines are skipped).
pub fn read_history(path: &Path) -> Vec<HistoryEntry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

/// Appends one drill to the history file.
pub fn append_history(path: &Path, entry: &HistoryEntry) -> Result<(), String> {
    let mut line = serde_json::to_string(entry).map_err(|e| e.to_string())?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    file.write_all(line.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The files [`write_reports`] writes.
#[derive(Debug, Clone)]
pub struct ReportPaths {
    pub junit: PathBuf,
    pub json: PathBuf,
    pub markdown: PathBuf,
    pub history: PathBuf,
}

impl ReportPaths {
    pub fn in_dir(dir: &Path) -> ReportPaths {
        ReportPaths {
            junit: dir.join("drill-junit.xml"),
            json: dir.join("drill-report.json"),
            markdown: dir.join("drill-report.md"),
            history: dir.join("history.jsonl"),
        }
    }
}

/// Writes the JUnit, JSON and Markdown reports into `dir` (the history is appended by
/// the caller first, so the report's history includes this drill).
pub fn write_reports(dir: &Path, report: &DrillReport) -> Result<ReportPaths, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let paths = ReportPaths::in_dir(dir);
    let mut json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    json.push('\n');
    let write =
        |path: &Path, text: &str| std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()));
    write(&paths.json, &json)?;
    write(&paths.junit, &junit(report))?;
    write(&paths.markdown, &markdown(report))?;
    Ok(paths)
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 forbids.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

struct Case {
    class: &'static str,
    name: String,
    seconds: f64,
    failure: Option<String>,
    skipped: bool,
}

fn cases(report: &DrillReport) -> Vec<Case> {
    let mut cases: Vec<Case> = report
        .steps
        .iter()
        .map(|s| Case {
            class: "steps",
            name: s.id.clone(),
            seconds: s.seconds,
            failure: step_failed(s)
                .then(|| format!("{}{}", s.status, s.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())),
            skipped: s.status == "skipped",
        })
        .collect();
    cases.extend(report.verification.iter().map(|c| Case {
        class: "verification",
        name: c.name.clone(),
        seconds: 0.0,
        failure: c.failure.clone(),
        skipped: false,
    }));
    for (name, m) in [("RTO", &report.rto), ("RPO", &report.rpo)] {
        cases.push(Case {
            class: "objectives",
            name: name.to_string(),
            seconds: 0.0,
            failure: m.failure(name),
            skipped: m.verdict == Verdict::NoObjective,
        });
    }
    cases
}

/// JUnit XML in the common (Jenkins/Surefire) dialect: one suite per drill.
pub fn junit(report: &DrillReport) -> String {
    let cases = cases(report);
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let skipped = cases.iter().filter(|c| c.skipped && c.failure.is_none()).count();
    let total: f64 = report.steps.iter().map(|s| s.seconds).sum();
    let suite = xml(&format!("drill {}", report.plan));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"drplan drill\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total:.3}\">",
        cases.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total:.3}\" timestamp=\"{}\">",
        cases.len(),
        xml(&report.started_at)
    );
    let _ = writeln!(out, "    <properties>");
    for (name, value) in [("runId", &report.run_id), ("target", &report.target), ("then", &report.then)] {
        let _ = writeln!(out, "      <property name=\"{name}\" value=\"{}\"/>", xml(value));
    }
    let _ = writeln!(out, "    </properties>");
    let plan = xml(&report.plan);
    for case in &cases {
        let head = format!(
            "    <testcase classname=\"drplan.drill.{plan}.{}\" name=\"{}\" time=\"{:.3}\"",
            case.class,
            xml(&case.name),
            case.seconds
        );
        match (&case.failure, case.skipped) {
            (Some(failure), _) => {
                let _ = writeln!(out, "{head}>");
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    xml(failure),
                    case.class,
                    xml(failure)
                );
                let _ = writeln!(out, "    </testcase>");
            }
            (None, true) => {
                let _ = writeln!(out, "{head}>\n      <skipped/>\n    </testcase>");
            }
            (None, false) => {
                let _ = writeln!(out, "{head}/>");
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn measured(m: &Measurement) -> String {
    m.achieved_seconds.map(seconds).unwrap_or_else(|| "not measured".into())
}

fn objective(m: &Measurement) -> String {
    m.objective_seconds.map(seconds).unwrap_or_else(|| "none".into())
}

/// Markdown table cells: no line breaks or pipes inside a cell.
fn cell(text: &str) -> String {
    crate::diag::escape(text).replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// The Markdown report: headline, objectives, verification, steps, trend.
pub fn markdown(report: &DrillReport) -> String {
    let mut out = String::new();
    let headline = if report.passed { "✅ passed" } else { "❌ failed" };
    let _ = writeln!(out, "# Drill of `{}`: {headline}\n", cell(&report.plan));
    let _ = writeln!(
        out,
        "Run `{}` against `{}`, {} → {}; then {} ({}).\n",
        cell(&report.run_id),
        cell(&report.target),
        cell(&report.started_at),
        cell(&report.finished_at),
        cell(&report.then),
        cell(&report.then_status)
    );
    let failures = report.failures();
    if !failures.is_empty() {
        out.push_str("> [!CAUTION]\n");
        for failure in &failures {
            let _ = writeln!(out, "> - {}", cell(failure));
        }
        out.push('\n');
    }
    out.push_str("## Objectives\n\n| | achieved | objective | verdict | how |\n|---|---|---|---|---|\n");
    for (name, m) in [("RTO", &report.rto), ("RPO", &report.rpo)] {
        let verdict =
            serde_json::to_value(m.verdict).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let _ = writeln!(out, "| {name} | {} | {} | {verdict} | {} |", measured(m), objective(m), cell(&m.detail));
    }
    out.push_str("\n## Verification\n\n");
    if report.verification.is_empty() {
        out.push_str("The plan restores nothing the drill can check beyond its steps.\n");
    } else {
        out.push_str("| check | result |\n|---|---|\n");
        for check in &report.verification {
            let result = check.failure.as_deref().map(|f| format!("❌ {}", cell(f))).unwrap_or_else(|| "✅".into());
            let _ = writeln!(out, "| {} | {result} |", cell(&check.name));
        }
    }
    out.push_str("\n## Steps\n\n| step | kind | status | duration |\n|---|---|---|---|\n");
    for step in &report.steps {
        let _ = writeln!(out, "| `{}` | {} | {} | {} |", cell(&step.id), step.kind, step.status, seconds(step.seconds));
    }
    let shown = &report.history[report.history.len().saturating_sub(HISTORY_SHOWN)..];
    let _ = writeln!(
        out,
        "\n## Trend (last {} drills)\n\n| finished | run | RTO | RPO | result |\n|---|---|---|---|---|",
        shown.len()
    );
    for entry in shown {
        let rto = entry.rto_seconds.map(seconds).unwrap_or_else(|| "—".into());
        let rpo = entry.rpo_seconds.map(seconds).unwrap_or_else(|| "—".into());
        let result = if entry.passed { "passed" } else { "failed" };
        let _ =
            writeln!(out, "| {} | `{}` | {rto} | {rpo} | {result} |", cell(&entry.finished_at), cell(&entry.run_id));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> DrillReport {
        DrillReport {
            version: DRILL_REPORT_VERSION,
            plan: "p".into(),
            plan_path: "p.yaml".into(),
            run_id: "r1".into(),
            rollback_run_id: Some("r2".into()),
            then: "rollback".into(),
            target: "ctx".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            finished_at: "2026-01-01T00:01:00Z".into(),
            run_status: "succeeded".into(),
            then_status: "succeeded".into(),
            passed: true,
            rto: Measurement::judge(Some(30.0), Some(60.0), "timed".into()),
            rpo: Measurement::judge(None, None, "no snapshot".into()),
            steps: vec![StepResult {
                id: "a<b>&\"c\"".into(),
                kind: "scale".into(),
                description: String::new(),
                status: "succeeded".into(),
                seconds: 1.5,
                started_at: None,
                error: None,
            }],
            verification: vec![CheckResult { name: "claim x Bound".into(), passed: true, failure: None }],
            history: Vec::new(),
        }
    }

    #[test]
    fn objectives_are_judged_and_a_miss_says_by_how_much() {
        assert_eq!(Measurement::judge(Some(30.0), Some(60.0), String::new()).verdict, Verdict::Met);
        assert_eq!(Measurement::judge(Some(60.0), Some(60.0), String::new()).verdict, Verdict::Met);
        assert_eq!(Measurement::judge(None, Some(60.0), String::new()).verdict, Verdict::NotMeasured);
        assert_eq!(Measurement::judge(Some(5.0), None, String::new()).verdict, Verdict::NoObjective);
        let missed = Measurement::judge(Some(150.0), Some(60.0), String::new());
        assert_eq!(
            missed.failure("RTO").as_deref(),
            Some("RTO missed by 1m 30.0s: achieved 2m 30.0s, objective 1m 0.0s")
        );
        assert_eq!(Measurement::judge(Some(30.0), Some(60.0), String::new()).failure("RTO"), None);
    }

    #[test]
    fn a_failed_verification_fails_the_drill_and_its_junit_case() {
        let mut report = report();
        assert!(report.failures().is_empty());
        report.verification[0] =
            CheckResult { name: "claim x Bound".into(), passed: false, failure: Some("the claim is Lost".into()) };
        assert_eq!(report.failures(), ["claim x Bound: the claim is Lost"]);
        let xml = junit(&report);
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(xml.contains("<failure message=\"the claim is Lost\" type=\"verification\">"), "{xml}");
    }

    #[test]
    fn junit_escapes_names_and_marks_objectives_without_a_target_skipped() {
        let xml = junit(&report());
        assert!(xml.contains("name=\"a&lt;b&gt;&amp;&quot;c&quot;\""), "{xml}");
        assert!(xml.contains("name=\"RPO\" time=\"0.000\">\n      <skipped/>"), "{xml}");
        assert!(xml.contains("skipped=\"1\""), "{xml}");
    }

    #[test]
    fn a_rollback_that_did_not_succeed_fails_the_drill() {
        let mut report = report();
        report.then_status = "failed".into();
        assert_eq!(report.failures(), ["rollback failed"]);
    }
}
