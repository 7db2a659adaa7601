//! Rendering a step graph as text, Graphviz DOT or Mermaid, critical path marked.

use std::collections::HashSet;
use std::fmt::Write;

use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;

use super::StepGraph;

/// Output formats of `dr graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Dot,
    Mermaid,
}

pub fn render(graph: &StepGraph, format: Format) -> String {
    match format {
        // Ids and names come from the plan: escaped before they reach a terminal. DOT
        // and Mermaid escape each string they quote.
        Format::Text => text(graph),
        Format::Dot => dot(graph),
        Format::Mermaid => mermaid(graph),
    }
}

fn critical_set(graph: &StepGraph) -> (HashSet<NodeIndex>, Vec<NodeIndex>, std::time::Duration) {
    let (path, total) = graph.critical_path();
    (path.iter().copied().collect(), path, total)
}

/// One line per step in dependency order: `*` marks the critical path, `!` destructive steps.
pub fn text(graph: &StepGraph) -> String {
    let (critical, path, total) = critical_set(graph);
    let levels = graph.levels();
    // Grouped by wave so steps that run in parallel are listed together.
    let mut order: Vec<NodeIndex> = graph.graph.node_indices().collect();
    order.sort_by_key(|n| (levels[n.index()], n.index()));
    let width = graph.steps().map(|(_, s)| s.id.len()).max().unwrap_or(0);
    let mut out = String::new();
    let destructive = graph.steps().filter(|(_, s)| s.is_destructive()).count();
    let _ = writeln!(
        out,
        "Plan {}: {}, {} destructive; critical path {}, about {}",
        graph.plan_name,
        crate::diag::plural(graph.len(), "step"),
        destructive,
        crate::diag::plural(path.len(), "step"),
        humantime::format_duration(total)
    );
    let _ = writeln!(out, "  (* on the critical path, ! destructive, wave = steps that can run together)\n");
    for n in order {
        let step = graph.step(n);
        let mark = if critical.contains(&n) { '*' } else { ' ' };
        let danger = if step.is_destructive() { '!' } else { ' ' };
        let mut deps: Vec<&str> = graph.predecessors(n).map(|p| graph.step(p).id.as_str()).collect();
        deps.sort();
        let after = if deps.is_empty() { String::new() } else { format!("  ← {}", deps.join(", ")) };
        let _ = writeln!(
            out,
            "{mark}{danger} wave {:<3} {:<width$}  {}{after}",
            levels[n.index()],
            step.id,
            step.describe(),
        );
    }
    crate::diag::escape(&out).into_owned()
}

fn dot_escape(s: &str) -> String {
    crate::diag::escape(s).replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT: one cluster box per plan entry, critical path in red.
pub fn dot(graph: &StepGraph) -> String {
    let (critical, _, _) = critical_set(graph);
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(&graph.plan_name));
    let _ = writeln!(out, "  rankdir=TB;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];");
    let mut entries: Vec<&str> = Vec::new();
    for (_, step) in graph.steps() {
        if !entries.contains(&step.entry.as_str()) {
            entries.push(&step.entry);
        }
    }
    for (i, entry) in entries.iter().enumerate() {
        let members: Vec<NodeIndex> = graph.steps().filter(|(_, s)| s.entry == *entry).map(|(n, _)| n).collect();
        let grouped = members.len() > 1;
        if grouped {
            let _ =
                writeln!(out, "  subgraph \"cluster_{i}\" {{\n    label=\"{}\";\n    style=dashed;", dot_escape(entry));
        }
        for n in members {
            let step = graph.step(n);
            let mut attrs = vec![format!("label=\"{}\\n{}\"", dot_escape(&step.id), dot_escape(&step.describe()))];
            if critical.contains(&n) {
                attrs.push("color=red, penwidth=2".into());
            }
            if step.is_destructive() {
                attrs.push("style=\"rounded,filled\", fillcolor=\"#fde2e2\"".into());
            }
            let _ = writeln!(out, "    n{} [{}];", n.index(), attrs.join(", "));
        }
        if grouped {
            let _ = writeln!(out, "  }}");
        }
    }
    for edge in graph.graph.edge_references() {
        let (a, b) = (edge.source(), edge.target());
        let style = if critical.contains(&a) && critical.contains(&b) { " [color=red, penwidth=2]" } else { "" };
        let _ = writeln!(out, "  n{} -> n{}{style};", a.index(), b.index());
    }
    out.push_str("}\n");
    out
}

/// Mermaid label text: quotes and angle brackets as entities, backticks too (a backtick
/// starts a Markdown string in a label), control characters as visible escapes.
fn mermaid_escape(s: &str) -> String {
    // Control characters become visible escapes first (a line break would end the statement).
    crate::diag::escape(s).replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;").replace('`', "#96;")
}

/// Mermaid flowchart (renders in GitHub pull requests): critical path styled.
pub fn mermaid(graph: &StepGraph) -> String {
    let (critical, _, _) = critical_set(graph);
    mermaid_marked(graph, &critical, &[])
}

/// Extra node styles of [`mermaid_marked`]: class name, Mermaid style, the steps it marks.
pub type MermaidClass<'a> = (&'a str, &'a str, HashSet<NodeIndex>);

/// [`mermaid`] with the critical path given (`dr plan` marks the path through the steps
/// left to run) and more classes of steps styled.
pub fn mermaid_marked(graph: &StepGraph, critical: &HashSet<NodeIndex>, classes: &[MermaidClass<'_>]) -> String {
    let mut out = String::from("flowchart TD\n");
    for (n, step) in graph.steps() {
        let _ = writeln!(
            out,
            "  n{}[\"{}<br/>{}\"]",
            n.index(),
            mermaid_escape(&step.id),
            mermaid_escape(&step.describe())
        );
    }
    for edge in graph.graph.edge_references() {
        let _ = writeln!(out, "  n{} --> n{}", edge.source().index(), edge.target().index());
    }
    out.push_str("  classDef critical stroke:#d00,stroke-width:3px\n  classDef destructive fill:#fde2e2\n");
    for (name, style, _) in classes {
        let _ = writeln!(out, "  classDef {name} {style}");
    }
    let list = |pred: &dyn Fn(NodeIndex) -> bool| {
        graph.graph.node_indices().filter(|&n| pred(n)).map(|n| format!("n{}", n.index())).collect::<Vec<_>>().join(",")
    };
    // Later class statements win where styles overlap: the destructive fill last.
    for (name, _, members) in classes {
        let members = list(&|n| members.contains(&n));
        if !members.is_empty() {
            let _ = writeln!(out, "  class {members} {name}");
        }
    }
    let on_path = list(&|n| critical.contains(&n));
    if !on_path.is_empty() {
        let _ = writeln!(out, "  class {on_path} critical");
    }
    let destructive = list(&|n| graph.step(n).is_destructive());
    if !destructive.is_empty() {
        let _ = writeln!(out, "  class {destructive} destructive");
    }
    out
}
