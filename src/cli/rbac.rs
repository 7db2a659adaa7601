//! `dr rbac`: prints the least-privilege RBAC (or, with `--iam`, the IAM policy) a plan
//! needs. Arguments and rendering only; the derivation is [`crate::rbac`].

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::diag::Diagnostics;
use crate::rbac::Rbac;
use crate::rbac::file::FileOptions;

#[derive(clap::Args, Debug)]
pub struct RbacArgs {
    /// Plan file to derive the rights of.
    pub plan: PathBuf,
    /// Cluster manifests to expand intents with (directory or files; repeatable);
    /// default: the directory beside the plan (`plans/NAME/`), as `dr plan --sim` uses.
    #[arg(long, value_name = "DIR|FILE")]
    pub cluster_from: Vec<PathBuf>,
    /// Only what `dr plan` needs (list per kind and namespace; EFS describes).
    #[arg(long)]
    pub read_only: bool,
    /// Also grant what `dr rollback` of a run needs (as a drill that rolls back does).
    #[arg(long, conflicts_with = "read_only")]
    pub with_rollback: bool,
    /// Namespace of the ServiceAccount the roles are bound to.
    #[arg(short = 'n', long, default_value = "drplan")]
    pub namespace: String,
    #[arg(long, value_enum, default_value = "yaml")]
    pub format: RbacFormat,
    /// Print the IAM policy (JSON) of the plan's cloud steps instead.
    #[arg(long)]
    pub iam: bool,
    /// AWS account id for the ARNs of the IAM policy (default `*`).
    #[arg(long, value_name = "ID")]
    pub account_id: Option<String>,
    /// Only this plan cluster's manifests (multi-cluster plans).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RbacFormat {
    Yaml,
    Json,
}

pub fn run(args: &RbacArgs) -> i32 {
    match derive(args) {
        Ok(rbac) => match render(&rbac, args) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(message) => {
                eprintln!("error: {}", crate::diag::escape(&message));
                1
            }
        },
        Err(diags) => {
            let color = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
            for diag in diags.iter() {
                eprint!("{}", diag.render(color));
                eprintln!();
            }
            1
        }
    }
}

fn derive(args: &RbacArgs) -> Result<Rbac, Diagnostics> {
    let options = FileOptions {
        cluster_from: args.cluster_from.clone(),
        read_only: args.read_only,
        rollback: args.with_rollback,
        service_account_namespace: args.namespace.clone(),
        account_id: args.account_id.clone(),
    };
    crate::rbac::file::derive_for_plan(&args.plan, &options)
}

fn render(rbac: &Rbac, args: &RbacArgs) -> Result<String, String> {
    if args.iam {
        let why =
            if rbac.read_only { "`dr plan` of this plan makes no AWS calls" } else { "the plan has no cloud steps" };
        let policy = rbac.iam.as_ref().ok_or(format!("{why}: it needs no IAM policy"))?;
        return Ok(format!("{}\n", serde_json::to_string_pretty(&policy.to_json()).unwrap_or_default()));
    }
    let mut items: Vec<Value> = Vec::new();
    for (cluster, manifests) in rbac.to_manifests() {
        if args.cluster.as_ref().is_none_or(|wanted| *wanted == cluster) {
            items.extend(manifests);
        }
    }
    if let Some(wanted) = &args.cluster
        && !rbac.clusters.contains_key(wanted)
    {
        let known: Vec<&str> = rbac.clusters.keys().map(String::as_str).collect();
        return Err(format!("the plan has no Kubernetes steps in cluster `{wanted}` (it has: {})", known.join(", ")));
    }
    if items.is_empty() {
        eprintln!("note: the plan makes no Kubernetes calls: it needs no Kubernetes rights");
    }
    if rbac.iam.is_some() {
        eprintln!("note: the plan has cloud steps too; `dr rbac --iam` prints their IAM policy");
    }
    Ok(match args.format {
        RbacFormat::Json => {
            let list = json!({ "apiVersion": "v1", "kind": "List", "items": items });
            format!("{}\n", serde_json::to_string_pretty(&list).unwrap_or_default())
        }
        RbacFormat::Yaml => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                crate::state::yaml_out::write_yaml(&mut out, item);
            }
            out
        }
    })
}
