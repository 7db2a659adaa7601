//! Checks on `exec` steps: the pod is chosen exactly one way, and the command says how
//! it is safe to run again after a crash (a warning when it does not).

use super::Step;
use super::build::Ctx;
use crate::diag::Diagnostic;
use crate::steps::ExecParams;

pub(super) fn check(ctx: &mut Ctx<'_>, step: &Step, p: &ExecParams) {
    let ways = [!p.pod.is_empty(), p.workload.is_some(), p.selector.is_some()].iter().filter(|w| **w).count();
    if ways != 1 {
        let message = format!(
            "exec step `{}` must choose its pod one way: `pod`, `workload` (+ `ordinal`) or `selector`",
            step.id
        );
        ctx.error("drplan::exec::pod_choice", step.origin, message, "choose the pod here").help =
            Some("for example `pod: etcd-0`, or `workload: {kind: StatefulSet, name: etcd}` with `ordinal: 0`".into());
    }
    if p.ordinal.is_some() && p.workload.is_none() {
        let message = format!("exec step `{}` has an `ordinal` but no `workload`", step.id);
        ctx.error("drplan::exec::pod_choice", step.origin, message, "ordinal of what?");
    }
    if p.command.is_empty() {
        let message = format!("exec step `{}` has an empty command", step.id);
        ctx.error("drplan::exec::empty_command", step.origin, message, "nothing to run");
    }
    if !p.is_rerun_safe() {
        let message = format!(
            "exec step `{}` has no idempotency guard: if drplan crashes while it runs, resume cannot tell whether it ran and stops",
            step.id
        );
        let mut diag = Diagnostic::warning("drplan::exec::no_guard", message)
            .in_file(&ctx.loaded.source)
            .with_label(step.origin, "no `creates:`, `unless:` or `idempotent: true`");
        diag.help = Some(
            "add `creates: PATH` (skipped when PATH exists), `unless: [COMMAND]` (skipped when it exits 0), \
             or `idempotent: true` if running it twice is harmless"
                .into(),
        );
        ctx.diags.push(diag);
    }
}
