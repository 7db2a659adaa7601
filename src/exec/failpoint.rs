//! Failpoints: deliberate crashes and failures, for testing crash-resume and rollback.
//!
//! Set `DRPLAN_FAILPOINT` to a comma-separated list of:
//! - `kill-after-transition=K`: SIGKILL this process right after the K-th checkpointed
//!   transition (step started, step finished or data captured) — a crash at a step
//!   boundary, with nothing flushed beyond the checkpoint;
//! - `fail-step=ID`: step `ID` fails instead of running.
//!
//! Unset (the normal case) costs one environment lookup per run.

use super::StepError;

#[derive(Clone, Debug, Default)]
pub struct Failpoint {
    kill_after_transition: Option<u64>,
    fail_steps: Vec<String>,
}

impl Failpoint {
    pub fn from_env() -> Failpoint {
        std::env::var("DRPLAN_FAILPOINT").map(|spec| Failpoint::parse(&spec)).unwrap_or_default()
    }

    pub fn parse(spec: &str) -> Failpoint {
        let mut failpoint = Failpoint::default();
        for part in spec.split(',').map(str::trim) {
            match part.split_once('=') {
                Some(("kill-after-transition", k)) => failpoint.kill_after_transition = k.parse().ok(),
                Some(("fail-step", id)) => failpoint.fail_steps.push(id.to_string()),
                _ => {}
            }
        }
        failpoint
    }

    /// Kills the process when the configured transition has been checkpointed.
    pub fn after_transition(&self, transitions: u64) {
        if self.kill_after_transition == Some(transitions) {
            // SIGKILL, not exit: no destructors, no flushing, exactly like a crash.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }

    pub fn fail_step(&self, id: &str) -> Option<StepError> {
        self.fail_steps
            .iter()
            .any(|s| s == id)
            .then(|| StepError::failed(format!("injected failure (DRPLAN_FAILPOINT fail-step={id})")))
    }
}
