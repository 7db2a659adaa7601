//! Step kinds: the typed actions a DR run performs, with their parameters.
//!
//! A step is the unit the executor runs, checkpoints and compensates. This module owns
//! what each kind means (its parameters, a human description, whether it destroys
//! anything, what it typically takes), the objects it creates ([`manifests`]) and how it
//! is carried out against the Kubernetes API ([`kube`]); scheduling, retries and
//! checkpoints belong to the executor.

mod action;
pub mod kube;
pub mod manifests;
pub mod redact;
mod refs;

pub use action::*;
pub use refs::*;
