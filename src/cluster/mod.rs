//! Cluster access: what drplan knows about a cluster, and where that knowledge comes from.
//!
//! Expansion and checks ask questions through [`ClusterFacts`]; [`Inventory`]
//! answers them from objects, loaded here from manifest dumps (`--cluster-from DIR`)
//! and, for live runs, from one list per kind and namespace of the API server, through
//! clients that limit their own request rate ([`throttle`]).

mod facts;
mod inventory;
pub mod live;
mod target;
pub mod throttle;

pub use facts::*;
pub use inventory::*;
pub use target::{ClusterTarget, reach_again, resolve as resolve_target};
