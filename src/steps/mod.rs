//! Step kinds: the typed actions a DR run performs, with their parameters.
//!
//! A step is the unit the executor runs, checkpoints and compensates. This module owns
//! what each kind means (its parameters, a human description, whether it destroys
//! anything, what it typically takes), not how it is executed against an API.

mod action;
pub mod kube;
mod refs;

pub use action::*;
pub use refs::*;
