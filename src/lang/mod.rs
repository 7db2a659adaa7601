//! The plan language: reading YAML DR plans into typed values with exact source spans.
//!
//! Owns the file format (like Terraform's `configs`): limits on hostile input, the
//! spanned YAML tree, decoding into [`model::Plan`], scalar types, and the JSON Schema.

pub mod de;
pub mod load;
pub mod model;
pub mod names;
pub mod schema;
mod values;
pub mod yaml;

pub use de::Spanned;
pub use load::{LoadedPlan, MAX_STEPS, load_plan, load_plan_str};
pub use model::*;
pub use values::{Duration, Quantity};
