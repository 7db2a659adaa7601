//! The simulated cluster (`dr sim`): a Kubernetes REST API on loopback backed by in-memory
//! state and deterministic controllers, for rehearsing plans and for tests that drive the
//! engine through a real `kube::Client` (or kubectl).
//!
//! - [`cluster`]: starting a sim and the [`SimHandle`] tests and the CLI hold.
//! - [`http`]: the REST server (routing, content negotiation, watch streams, faults).
//! - [`auth`]: ServiceAccount tokens and RBAC authorisation (opt-in: requests with a token).
//! - [`api`]: the verbs on the state; [`admission`] and [`schema`] validate what is stored.
//! - [`store`], [`registry`]: objects, resourceVersions, watch history; served resource types.
//! - [`controllers`]: StatefulSet, Deployment, scheduler, kubelet, PV binder and provider,
//!   snapshot controller, garbage collector.
//! - [`clock`]: the virtual clock; [`config`]: settings and fault rules.
//! - [`exec`]: `pods/exec` over WebSocket, a command interpreter per container and simulated
//!   etcd members; [`files`]: the directories and files volumes and snapshots hold.
//! - [`manifests`]: loading YAML manifests; [`cli`]: the `dr sim` subcommands.
//! - [`table`]: server-side printing for `kubectl get`.
//! - [`aws`]: the simulated AWS (EFS) a cluster's EFS claims read and write through.

pub mod admission;
pub mod api;
pub mod auth;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod controllers;
pub mod data;
pub mod error;
pub mod exec;
pub mod files;
pub mod http;
pub mod manifests;
pub mod patch;
pub mod quantity;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod state;
pub mod store;
pub mod table;

pub use clock::SimClock;
pub use cluster::{SimCluster, SimError, SimHandle};
pub use config::{FaultRule, Faults, ModificationLimit, SimConfig};
pub use error::ApiError;
pub use state::RequestRecord;
pub use store::{EventType, Mutation};
