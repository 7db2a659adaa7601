//! Diagnostics for objects a plan names that the cluster facts do not have: pointed at
//! the value to fix, with the closest existing name, and naming a missing namespace as
//! such instead of every object in it.

use super::build::Ctx;
use crate::diag::Span;
use crate::lang::StepEntry;
use crate::lang::de::closest;
use crate::steps::WorkloadRef;

/// Reports a workload that is not in `namespace` of `cluster`.
pub(super) fn report_missing_workload(
    ctx: &mut Ctx<'_>,
    entry: &StepEntry,
    cluster: &str,
    namespace: &str,
    workload: &WorkloadRef,
) {
    let Some(facts) = ctx.facts else { return };
    let namespaces = facts.namespaces(cluster);
    if !namespaces.known.contains(namespace) && (namespaces.complete || !namespaces.known.is_empty()) {
        let known: Vec<&str> = namespaces.known.iter().map(String::as_str).collect();
        let hint = closest(namespace, &known).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
        let message = if namespaces.complete {
            format!("namespace `{namespace}` does not exist in cluster `{cluster}`{hint}")
        } else {
            format!("namespace `{namespace}` has no workloads or claims in cluster `{cluster}`{hint}; does it exist?")
        };
        ctx.error("drplan::facts::no_namespace", entry.kind_span, message, "needed to expand this intent").help = Some(
            format!("the namespace is the entry's `namespace:`, or else its cluster's; {workload} is looked up there"),
        );
        return;
    }
    let names = facts.workload_names(cluster, namespace, workload.kind);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let hint = closest(&workload.name, &names).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
    let message = format!("{workload} not found in namespace `{namespace}` of cluster `{cluster}`{hint}");
    let span = name_value_span(ctx.loaded.source.text(), entry.kind_span, &workload.name).unwrap_or(entry.kind_span);
    let diag = ctx.error("drplan::facts::not_found", span, message, "no such workload");
    if hint.is_empty() && !names.is_empty() {
        diag.help = Some(format!("{}s in `{namespace}`: {}", workload.kind, names.join(", ")));
    }
}

/// Where `name: <value>` is written after `from`: the value's span. Workload references
/// are plain strings once decoded, so their place is found again in the source.
fn name_value_span(text: &str, from: Span, value: &str) -> Option<Span> {
    let start = from.start as usize;
    let rest = text.get(start..)?;
    let mut offset = 0;
    while let Some(found) = rest[offset..].find("name:") {
        let after_key = offset + found + "name:".len();
        let written = &rest[after_key..];
        let value_at = written.len() - written.trim_start_matches([' ', '\t']).len();
        let candidate = &written[value_at..];
        let quote = candidate.chars().next().filter(|c| *c == '"' || *c == '\'').map_or(0, char::len_utf8);
        let is_boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || "-_.".contains(c)));
        if candidate[quote..].starts_with(value) && is_boundary(candidate[quote + value.len()..].chars().next()) {
            let begin = start + after_key + value_at + quote;
            return Some(Span::new(begin, begin + value.len()));
        }
        offset = after_key;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_written_name_value() {
        let text = "restoreClaims:\n  workload:\n    kind: StatefulSet\n    name: pg\n  claimTemplate: data\n";
        let span = name_value_span(text, Span::new(0, 13), "pg").unwrap();
        assert_eq!(&text[span.start as usize..span.end as usize], "pg");
        let flow = "x: {workload: {kind: StatefulSet, name: \"pg-main\"}}";
        let span = name_value_span(flow, Span::new(0, 1), "pg-main").unwrap();
        assert_eq!(&flow[span.start as usize..span.end as usize], "pg-main");
        assert_eq!(name_value_span("name: pgx", Span::new(0, 1), "pg"), None);
    }
}
