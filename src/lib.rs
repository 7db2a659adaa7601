//! drplan: declarative, reviewable, resumable disaster-recovery runbooks for Kubernetes.
//!
//! The pipeline, one module per stage:
//! - [`lang`]: plan files → typed plans, with source spans (Terraform's `configs`).
//! - [`steps`]: the typed step kinds a run is made of.
//! - [`cluster`]: facts about clusters (manifests now, the live API later).
//! - [`graph`]: intents expanded into a DAG of steps, checked for safety, rendered.
//! - [`checkpoint`]: durable, locked run records for resume and rollback (Terraform's `states`).
//! - [`diag`]: diagnostics shared by every stage (Terraform's `tfdiags`).
//! - [`cli`]: the `dr` command.

pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod diag;
pub mod graph;
pub mod lang;
pub mod steps;
