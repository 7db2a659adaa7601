//! `dr apply`, `dr resume`, `dr rollback`: what the end of a run means for the exit code
//! and what to do next (the operations themselves are in `crate::ops`).

use crate::checkpoint::RunStatus;
use crate::ops::{Ended, RunEnd};

/// Exit code of an apply, resume or rollback, with the next step when it did not succeed.
pub fn exit_code(ended: &Ended) -> i32 {
    match ended {
        Ended::NothingToDo => 0,
        Ended::Refused => 1,
        Ended::Ran(end) => run_exit_code(end),
    }
}

fn run_exit_code(end: &RunEnd) -> i32 {
    let run_id = end.run_id();
    let rollback = end.is_rollback();
    match end.status {
        RunStatus::Succeeded => 0,
        RunStatus::Interrupted => {
            let verb = if rollback { "rollback" } else { "resume" };
            eprintln!("Continue with `dr {verb} {run_id}`.");
            1
        }
        _ => {
            for (id, error) in &end.failed {
                eprintln!("Step {id} failed: {error}");
            }
            if rollback {
                eprintln!("Fix the cause and continue the rollback with `dr rollback {run_id}`.");
            } else {
                eprintln!(
                    "Fix the cause and continue with `dr resume {run_id}`, or undo the run with `dr rollback {run_id}`."
                );
            }
            1
        }
    }
}
