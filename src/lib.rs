//! drplan: declarative, reviewable, resumable disaster-recovery runbooks for Kubernetes.
//!
//! The pipeline, one module per stage:
//! - [`lang`]: plan files → typed plans, with source spans (Terraform's `configs`).
//! - [`steps`]: the typed step kinds a run is made of.
//! - [`cluster`]: facts about clusters, from manifests or the live API.
//! - [`cloud`]: AWS clients (one per service and region) and the cloud steps (EFS).
//! - [`graph`]: intents expanded into a DAG of steps, checked for safety, rendered.
//! - [`state`]: live state read for a plan, predicted changes, diffs (`dr plan`).
//! - [`exec`]: the executor: bounded parallelism, retries, a checkpoint per transition.
//! - [`sim`]: the simulated cluster (`dr sim`).
//! - [`checkpoint`]: durable, locked run records for resume and rollback (Terraform's `states`).
//! - [`diag`]: diagnostics shared by every stage (Terraform's `tfdiags`).
//! - [`ops`]: the operations (plan, apply, resume, rollback, commit) as a library
//!   (Terraform's `backend/local`).
//! - [`cli`]: the `dr` command: parses arguments, calls [`ops`], renders (Terraform's `command`).

pub mod checkpoint;
pub mod cli;
pub mod cloud;
pub mod cluster;
pub mod diag;
pub mod exec;
pub mod graph;
pub mod lang;
pub mod ops;
pub mod sim;
pub mod state;
pub mod steps;
