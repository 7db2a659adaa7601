//! `dr plan --format markdown`: the review of a plan as one pull-request comment.
//!
//! A headline (changes, no changes, blocked, error), a summary table, warnings about
//! destructive steps and data at risk, the objectives against the critical-path estimate,
//! which state the plan was computed against, the step DAG as a Mermaid flowchart and the
//! per-object diffs in collapsible blocks. GitHub refuses comments over 65,536
//! characters, so every part that grows with the plan has a cap, and what is left out is
//! said. Everything that comes from input (names, reasons, object contents) is escaped:
//! a name cannot open a link, close a table cell, start HTML or ping someone.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use similar::TextDiff;

use super::output::{Outcome, PlanOutput, StepStateName};
use super::report::PlanReport;
use super::yaml_out::write_yaml;
use super::{Change, ChangeKind, StepState};
use crate::graph::render::{MermaidClass, mermaid_marked};

/// The whole document stays below this many bytes (so below as many characters): GitHub's
/// limit for a comment is 65,536 characters, and this leaves room for what a workflow adds.
pub const MAX_DOCUMENT_BYTES: usize = 60_000;
/// Of which the diff of one object takes at most this much.
const MAX_DIFF_BYTES: usize = 6_000;
/// The Mermaid block is left out beyond this (GitHub's Mermaid renders at most 500
/// edges and 50,000 characters, and a huge chart is unreadable anyway).
const MAX_MERMAID_BYTES: usize = 20_000;
const MAX_MERMAID_EDGES: usize = 500;
/// Rows of the step table, and entries of the warning lists.
const MAX_STEP_ROWS: usize = 100;
const MAX_LISTED: usize = 20;

/// Which state a plan was computed against.
#[derive(Clone, Debug)]
pub enum StateSource {
    /// Live clusters: (cluster, kubeconfig context).
    Live(Vec<(String, String)>),
    /// Simulated clusters loaded from state dumps (`--sim`): the directories and the
    /// modification time of their newest file.
    Dump { dirs: Vec<PathBuf>, newest: Option<SystemTime> },
}

impl StateSource {
    /// The dumps in `dirs`, dated by their newest file.
    pub fn dump(dirs: Vec<PathBuf>) -> StateSource {
        let newest = dirs.iter().filter_map(|d| newest_mtime(d)).max();
        StateSource::Dump { dirs, newest }
    }
}

/// The newest modification time of a file under `path` (or of `path` itself).
fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path).ok()?.filter_map(|e| e.ok()).filter_map(|e| newest_mtime(&e.path())).max()
}

/// What the review shows besides the report.
pub struct ReviewContext<'a> {
    /// The plan file as given on the command line.
    pub plan_path: &'a str,
    pub state: StateSource,
    /// When the review is made, for the age of a dump.
    pub now: SystemTime,
}

/// The hidden marker a workflow finds its previous comment for this plan by.
pub fn marker(plan_path: &str) -> String {
    // An HTML comment ends at `-->` and may not contain `--`.
    let mut safe: String =
        plan_path.chars().map(|c| if c.is_ascii_alphanumeric() || "._/-".contains(c) { c } else { '_' }).collect();
    while safe.contains("--") {
        safe = safe.replace("--", "-_");
    }
    if safe.ends_with('-') {
        safe.push('_');
    }
    format!("<!-- drplan:{safe} -->")
}

/// The review of a plan that could not be computed.
pub fn render_error(plan_path: &str, message: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}\n### ❌ drplan: error — {}\n", marker(plan_path), text(plan_path));
    let _ = writeln!(out, "The plan could not be computed; nothing was changed.\n");
    let message = truncate_lines(message, MAX_DOCUMENT_BYTES / 2).0;
    out.push_str(&code_block("text", &message));
    out
}

/// The review of a computed plan.
pub fn render(report: &PlanReport<'_>, output: &PlanOutput, context: &ReviewContext<'_>) -> String {
    let mut head = String::new();
    headline(&mut head, output, context);
    summary_table(&mut head, output);
    warnings(&mut head, report, output);
    objectives(&mut head, output);
    state_source(&mut head, context);
    head.push_str(&step_graph(report, output));
    head.push_str(&step_table(output));
    let budget = MAX_DOCUMENT_BYTES.saturating_sub(head.len());
    head.push_str(&changes(report, budget));
    head
}

fn headline(out: &mut String, output: &PlanOutput, context: &ReviewContext<'_>) {
    let counts = &output.counts;
    let verdict = match output.outcome {
        Outcome::Blocked => {
            format!("⛔ drplan: blocked — {} cannot run", crate::diag::plural(counts.steps_blocked, "step"))
        }
        Outcome::NoChanges => "✅ drplan: no changes".to_string(),
        Outcome::Changes if counts.destructive_steps > 0 || output.data_at_risk_gib > 0.0 => {
            format!("⚠️ drplan: changes, destructive — {}", destructive_steps(counts.destructive_steps))
        }
        Outcome::Changes => "📝 drplan: changes".to_string(),
    };
    let _ = writeln!(out, "{}\n### {verdict}\n", marker(context.plan_path));
    let _ = writeln!(out, "**Plan** {} ({})  ", text(&output.plan_name), text(context.plan_path));
    let _ = writeln!(out, "{}\n", text(&output.summary));
}

fn destructive_steps(n: usize) -> String {
    format!("{n} destructive step{}", if n == 1 { "" } else { "s" })
}

fn summary_table(out: &mut String, output: &PlanOutput) {
    let c = &output.counts;
    let f = &c.if_fallback;
    let mut rows: Vec<(&str, String)> = vec![
        ("Objects to create", c.create.to_string()),
        ("Objects to change", c.change.to_string()),
        ("Objects to replace (deleted, then created again)", c.replace.to_string()),
        ("Objects to delete", c.delete.to_string()),
        ("Destructive steps", c.destructive_steps.to_string()),
        ("Claims deleted on the way (data at risk)", gib(output.data_at_risk_gib)),
        ("Conditional fallback steps", c.steps_conditional.to_string()),
        (
            "Steps to run / satisfied / blocked",
            format!("{} / {} / {}", c.steps_to_run, c.steps_satisfied, c.steps_blocked),
        ),
    ];
    if f.create + f.change + f.delete + f.replaced_instead_of_changed > 0 || output.data_at_risk_if_fallback_gib > 0.0 {
        rows.push((
            "If fallbacks run: more to create / change / delete / replaced instead of changed",
            format!("{} / {} / {} / {}", f.create, f.change, f.delete, f.replaced_instead_of_changed),
        ));
        rows.push(("If fallbacks run: claims deleted", gib(output.data_at_risk_if_fallback_gib)));
    }
    out.push_str("| | |\n|---|---:|\n");
    for (label, value) in rows {
        let _ = writeln!(out, "| {label} | {value} |");
    }
    out.push('\n');
}

fn gib(value: f64) -> String {
    format!("{value:.1} GiB")
}

fn warnings(out: &mut String, report: &PlanReport<'_>, output: &PlanOutput) {
    let blocked: Vec<String> = report
        .states
        .iter()
        .filter_map(|(id, s)| match s {
            StepState::Blocked(why) => Some(format!("{}: {}", code_or_text(id), text(why))),
            _ => None,
        })
        .collect();
    if !blocked.is_empty() {
        out.push_str("> [!CAUTION]\n> These steps cannot run; `dr apply` would stop before changing anything:\n");
        list_in_quote(out, &blocked);
        out.push('\n');
    }
    let destructive: Vec<String> = output
        .steps
        .iter()
        .filter(|s| s.destructive && matches!(s.state, StepStateName::ToDo | StepStateName::Conditional))
        .map(|s| {
            let when = if s.state == StepStateName::Conditional { " (only if a fallback runs)" } else { "" };
            format!("{}: {}{when}", code_or_text(&s.id), text(&s.description))
        })
        .collect();
    let deleted_claims: Vec<String> = report
        .changes
        .iter()
        .filter(|c| (c.deleted_on_the_way || c.deleted_if_fallback) && c.key.kind == "PersistentVolumeClaim")
        .map(|c| {
            let when = if c.deleted_on_the_way { "" } else { " (only if a fallback runs)" };
            format!("{} [{}]{when}", text(&c.key.to_string()), text(&c.key.cluster))
        })
        .collect();
    if destructive.is_empty() && deleted_claims.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "> [!WARNING]\n> **{}**, {} of claims deleted on the way{}.",
        destructive_steps(destructive.len()),
        gib(output.data_at_risk_gib),
        match output.data_at_risk_if_fallback_gib {
            g if g > 0.0 => format!(" (+ {} if fallbacks run)", gib(g)),
            _ => String::new(),
        }
    );
    list_in_quote(out, &destructive);
    if !deleted_claims.is_empty() {
        out.push_str(">\n> Claims deleted (each only after a snapshot of it taken in this run is readyToUse, unless the plan accepts data loss):\n");
        list_in_quote(out, &deleted_claims);
    }
    out.push('\n');
}

/// A bullet list inside a block quote, at most [`MAX_LISTED`] entries.
fn list_in_quote(out: &mut String, items: &[String]) {
    for item in items.iter().take(MAX_LISTED) {
        let _ = writeln!(out, "> - {item}");
    }
    if items.len() > MAX_LISTED {
        let _ = writeln!(out, "> - … and {} more", items.len() - MAX_LISTED);
    }
}

fn objectives(out: &mut String, output: &PlanOutput) {
    let estimate = Duration::from_secs_f64(output.critical_path_seconds.round());
    let path = format!(
        "{} (critical path of {})",
        humantime::format_duration(estimate),
        crate::diag::plural(output.critical_path.len(), "step")
    );
    out.push_str("#### Objectives\n\n");
    let Some(objectives) = &output.objectives else {
        let _ = writeln!(out, "The plan sets no objectives. Estimated duration: {path}.\n");
        return;
    };
    out.push_str("| Objective | Target | Plan's estimate | |\n|---|---|---|---|\n");
    match objectives.rto_seconds {
        Some(rto) => {
            let verdict =
                if objectives.estimate_within_rto == Some(true) { "✅ fits" } else { "❌ longer than the RTO" };
            let _ = writeln!(
                out,
                "| RTO | {} | {path} | {verdict} |",
                humantime::format_duration(Duration::from_secs(rto))
            );
        }
        None => {
            let _ = writeln!(out, "| RTO | not set | {path} | |");
        }
    }
    if let Some(rpo) = objectives.rpo_seconds {
        let _ = writeln!(
            out,
            "| RPO | {} | set by the age of the snapshot or replication point at run time | measured by `dr drill` |",
            humantime::format_duration(Duration::from_secs(rpo))
        );
    }
    out.push('\n');
}

fn state_source(out: &mut String, context: &ReviewContext<'_>) {
    out.push_str("**Planned against** ");
    match &context.state {
        StateSource::Live(clusters) => {
            let names: Vec<String> = clusters
                .iter()
                .map(|(cluster, ctx)| format!("cluster {} (context {})", code_or_text(cluster), code_or_text(ctx)))
                .collect();
            let _ = writeln!(out, "the live clusters: {}.\n", names.join(", "));
        }
        StateSource::Dump { dirs, newest } => {
            let dirs: Vec<String> = dirs.iter().map(|d| code_or_text(&d.display().to_string())).collect();
            let age = match newest {
                Some(newest) => {
                    let age = context.now.duration_since(*newest).unwrap_or_default();
                    let age = Duration::from_secs(age.as_secs() / 60 * 60);
                    let when = jiff::Timestamp::try_from(*newest)
                        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_default();
                    let age = if age.is_zero() {
                        "less than a minute".into()
                    } else {
                        humantime::format_duration(age).to_string()
                    };
                    format!(", as of {when} ({age} old, from the files' modification times)")
                }
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "a simulated cluster loaded from the state dump {}{age}: no cluster was contacted.\n",
                dirs.join(", ")
            );
        }
    }
}

fn step_graph(report: &PlanReport<'_>, output: &PlanOutput) -> String {
    let graph = report.graph;
    let mut out = String::from("#### Steps\n\n");
    let edges = graph.graph.edge_count();
    let too_large = || {
        format!(
            "The step graph ({}, {edges} dependencies) is too large to draw here; `dr graph --format mermaid` on the plan draws it.\n\n",
            crate::diag::plural(graph.len(), "step")
        )
    };
    if edges > MAX_MERMAID_EDGES {
        out.push_str(&too_large());
        return out;
    }
    let (path, _) = report.critical_path_left();
    let critical: HashSet<_> = path.into_iter().collect();
    let of_state = |state: StepStateName| -> HashSet<_> {
        output.steps.iter().filter(|s| s.state == state).filter_map(|s| graph.index_of(&s.id)).collect()
    };
    let classes: [MermaidClass<'_>; 3] = [
        ("satisfied", "fill:#eeeeee,color:#777777", of_state(StepStateName::Satisfied)),
        ("conditional", "stroke-dasharray:4 3", of_state(StepStateName::Conditional)),
        ("blocked", "fill:#fff3b0,stroke:#cc9900", of_state(StepStateName::Blocked)),
    ];
    let chart = mermaid_marked(graph, &critical, &classes);
    if chart.len() > MAX_MERMAID_BYTES {
        out.push_str(&too_large());
        return out;
    }
    out.push_str(
        "Red border: the critical path through the steps left to run; red fill: destructive; grey: already satisfied; dashed: only if a fallback runs; yellow: blocked.\n\n",
    );
    out.push_str(&code_block("mermaid", &chart));
    out.push('\n');
    out
}

fn step_table(output: &PlanOutput) -> String {
    let mut out = format!("<details><summary>Steps ({})</summary>\n\n", output.steps.len());
    out.push_str("| Step | State | What | |\n|---|---|---|---|\n");
    for step in output.steps.iter().take(MAX_STEP_ROWS) {
        let state = match step.state {
            StepStateName::Satisfied => "satisfied",
            StepStateName::ToDo => "to do",
            StepStateName::Conditional => "if needed",
            StepStateName::Blocked => "**blocked**",
        };
        let mut notes = Vec::new();
        if step.destructive {
            notes.push("destructive".to_string());
        }
        if step.on_critical_path {
            notes.push("critical path".to_string());
        }
        if let Some(why) = &step.reason {
            notes.push(text(why));
        }
        let _ = writeln!(
            out,
            "| {} | {state} | {} | {} |",
            code_or_text(&step.id),
            text(&step.description),
            notes.join("; ")
        );
    }
    if output.steps.len() > MAX_STEP_ROWS {
        let _ = writeln!(out, "\n… and {} more steps; `dr plan` lists them all.", output.steps.len() - MAX_STEP_ROWS);
    }
    out.push_str("\n</details>\n\n");
    out
}

/// The per-object diffs, destructive ones first, within `budget` bytes.
fn changes(report: &PlanReport<'_>, budget: usize) -> String {
    let mut out = format!("#### Changes ({})\n\n", crate::diag::plural(report.changes.len(), "object"));
    if report.changes.is_empty() {
        out.push_str("Nothing to change.\n");
        return out;
    }
    let mut ordered: Vec<&Change> = report.changes.iter().collect();
    ordered.sort_by_key(|c| (!c.deleted_on_the_way, !c.deleted_if_fallback));
    // Room kept for the note about objects left out.
    let budget = budget.saturating_sub(out.len() + 400);
    let mut shown = 0;
    for change in &ordered {
        let block = change_block(change);
        if out.len() + block.len() > budget {
            break;
        }
        out.push_str(&block);
        shown += 1;
    }
    if shown < ordered.len() {
        let _ = writeln!(
            out,
            "**{} more not shown** to keep this comment within GitHub's size limit; `dr plan` (or `--format json`) shows every diff.",
            crate::diag::plural(ordered.len() - shown, "changed object")
        );
    }
    out
}

fn change_block(change: &Change) -> String {
    let (symbol, word) = match change.kind {
        ChangeKind::Create => ("+", "create"),
        ChangeKind::Update => ("~", "change"),
        ChangeKind::Replace => ("-/+", "replace"),
        ChangeKind::Delete => ("-", "delete"),
    };
    let note = if change.deleted_on_the_way {
        " — ⚠️ destructive: deleted during the run"
    } else if change.deleted_if_fallback {
        " — ⚠️ deleted and restored if a fallback runs"
    } else if change.only_if_fallback {
        " — only if a fallback runs"
    } else if change.temporary {
        " — paused during the run, then back as it was"
    } else {
        ""
    };
    let mut out = format!(
        "<details><summary>{symbol} {word} {} [{}]{note}</summary>\n\n",
        html(&change.key.to_string()),
        html(&change.key.cluster)
    );
    let by: Vec<String> = change.steps.iter().map(|s| code_or_text(s)).collect();
    let _ = writeln!(out, "By: {}\n", by.join(", "));
    let (diff, cut) = truncate_lines(&unified_diff(change), MAX_DIFF_BYTES);
    out.push_str(&code_block("diff", &diff));
    if cut > 0 {
        let _ = writeln!(
            out,
            "\n*Diff truncated: {} left out; `dr plan` shows it whole.*",
            crate::diag::plural(cut, "line")
        );
    }
    out.push_str("\n</details>\n\n");
    out
}

fn unified_diff(change: &Change) -> String {
    let mut before = String::new();
    let mut after = String::new();
    if let Some(object) = &change.before {
        write_yaml(&mut before, object);
    }
    if let Some(object) = &change.after {
        write_yaml(&mut after, object);
    }
    let diff = TextDiff::from_lines(before.as_str(), after.as_str());
    diff.unified_diff().context_radius(3).header("before", "after").to_string()
}

/// At most `max` bytes of whole lines of `s`, and how many lines were left out.
fn truncate_lines(s: &str, max: usize) -> (String, usize) {
    let mut kept = String::new();
    let mut lines = s.lines();
    for line in lines.by_ref() {
        if kept.len() + line.len() + 1 > max {
            return (kept, 1 + lines.count());
        }
        kept.push_str(line);
        kept.push('\n');
    }
    (kept, 0)
}

/// A fenced code block that nothing in `body` can close: the fence is longer than any run
/// of backticks in it. Control characters (but tabs) are shown escaped.
fn code_block(info: &str, body: &str) -> String {
    let body = visible_controls(body);
    let longest = body.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    let newline = if body.ends_with('\n') { "" } else { "\n" };
    format!("{fence}{info}\n{body}{newline}{fence}\n")
}

fn visible_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Text from input, safe in Markdown paragraphs and table cells: Markdown punctuation
/// backslash-escaped, HTML special characters as entities, control characters shown
/// escaped, and `@` kept from mentioning anyone.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => out.push_str("@&#8203;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '$' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Text from input inside raw HTML (`<summary>`), where Markdown is not interpreted.
fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '@' => out.push_str("@&#8203;"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// A name as inline code when nothing in it can break out of a code span, else as text.
fn code_or_text(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c)) && !s.is_empty() {
        format!("`{s}`")
    } else {
        text(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_what_markdown_and_html_would_interpret() {
        let escaped = text("a|b <script> `x` [l](u) @team *e*\u{1b}[31m");
        for bad in ["<script>", "`x`", "[l](u)", "@team", "*e*", "\u{1b}", "a|b"] {
            assert!(!escaped.contains(bad), "{bad:?} survived in {escaped}");
        }
        assert!(escaped.contains("a\\|b") && escaped.contains("&lt;script&gt;"), "{escaped}");
    }

    #[test]
    fn code_blocks_cannot_be_closed_by_their_content() {
        let block = code_block("diff", "+ a\n+ ````\n+ b");
        assert!(block.starts_with("`````diff\n"), "{block}");
        assert!(block.ends_with("\n`````\n"), "{block}");
    }

    #[test]
    fn the_marker_is_a_well_formed_html_comment() {
        assert_eq!(marker("plans/a b--c>.yaml"), "<!-- drplan:plans/a_b-_c_.yaml -->");
        assert_eq!(marker("plans/x---"), "<!-- drplan:plans/x-_-_ -->");
    }

    #[test]
    fn truncation_keeps_whole_lines_and_counts_the_rest() {
        let (kept, cut) = truncate_lines("aaaa\nbbbb\ncccc\n", 10);
        assert_eq!((kept.as_str(), cut), ("aaaa\nbbbb\n", 1));
    }

    const ONE_WAIT: &str = "apiVersion: drplan.dev/v1alpha1\nkind: DrPlan\nmetadata: {name: hostile}\nclusters: [{name: c, namespace: db}]\nsteps:\n  - id: gone\n    wait: {for: {podsGone: {workload: {kind: StatefulSet, name: pg}}}}\n";

    fn hostile_change(name: &str, before: serde_json::Value) -> Change {
        Change {
            key: super::super::ObjectKey::new("c", "v1", "ConfigMap", Some("db"), name),
            kind: ChangeKind::Delete,
            before: Some(before),
            after: None,
            steps: vec!["gone".into()],
            deleted_on_the_way: true,
            deleted_if_fallback: false,
            only_if_fallback: false,
            temporary: false,
        }
    }

    /// Renders a review of hostile input: names, reasons and contents that Markdown,
    /// HTML or a terminal would interpret.
    fn hostile_review(changes: &[Change]) -> String {
        let (loaded, _) = crate::lang::load_plan_str("hostile.yaml", ONE_WAIT);
        let (graph, diags) =
            crate::graph::build(&loaded.unwrap(), crate::graph::BuildOptions { facts: None, intents_only: false });
        assert!(!diags.has_errors(), "{diags:?}");
        let graph = graph.unwrap();
        let states =
            vec![("gone".to_string(), StepState::Blocked("pod `a|b` said <img src=x> @admins\u{1b}[2J".into()))];
        let report = PlanReport { graph: &graph, states: &states, changes, requests: 1 };
        let output = PlanOutput::new(&report, None);
        let context =
            ReviewContext { plan_path: "plans/x.yaml", state: StateSource::Live(vec![]), now: SystemTime::now() };
        render(&report, &output, &context)
    }

    #[test]
    fn hostile_input_cannot_escape_its_place_in_the_review() {
        let contents = serde_json::json!({"data": {"k": "```\n</details><script>x</script>\n\u{7}"}});
        let review = hostile_review(&[hostile_change("a</summary><b>@x", contents)]);
        assert!(!review.contains('\u{1b}') && !review.contains('\u{7}'), "control characters are shown escaped");
        let mut fenced = 0;
        let mut in_code = false;
        let (mut html, mut prose) = (String::new(), String::new());
        for event in pulldown_cmark::Parser::new(&review) {
            match event {
                pulldown_cmark::Event::Start(pulldown_cmark::Tag::CodeBlock(_)) => {
                    (fenced, in_code) = (fenced + 1, true)
                }
                pulldown_cmark::Event::End(pulldown_cmark::TagEnd::CodeBlock) => in_code = false,
                pulldown_cmark::Event::Html(h) | pulldown_cmark::Event::InlineHtml(h) => html.push_str(&h),
                pulldown_cmark::Event::Text(t) if !in_code => prose.push_str(&t),
                _ => {}
            }
        }
        assert_eq!(fenced, 2, "the chart and the diff, each one code block:\n{review}");
        assert_eq!(html.matches("<details>").count(), html.matches("</details>").count(), "{html}");
        for bad in ["<img", "<script", "<b>", "</summary><"] {
            assert!(!html.contains(bad), "{bad:?} is HTML:\n{html}");
        }
        for mention in ["@admins", "@x"] {
            assert!(!prose.contains(mention) && !html.contains(mention), "{mention} would notify:\n{review}");
        }
        assert!(prose.contains("a|b") && prose.contains("<img src=x>"), "shown as text:\n{prose}");
    }

    #[test]
    fn a_long_diff_is_cut_with_a_note_and_the_document_stays_under_the_limit() {
        let big: serde_json::Map<String, serde_json::Value> =
            (0..2_000).map(|i| (format!("key-{i}"), serde_json::Value::from("x".repeat(40)))).collect();
        let changes: Vec<Change> =
            (0..40).map(|i| hostile_change(&format!("cm-{i}"), serde_json::json!({"data": big}))).collect();
        let review = hostile_review(&changes);
        assert!(review.contains("*Diff truncated: "), "{review}");
        assert!(review.contains("more not shown"), "{review}");
        assert!(review.len() <= MAX_DOCUMENT_BYTES, "{} bytes", review.len());
    }
}
