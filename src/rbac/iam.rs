//! The IAM policy of a plan's cloud steps: the EFS calls `cloud::efs` makes (and
//! `cloud::report` for `dr plan`), and the EC2 calls of the EBS step kinds, with
//! resources by ARN where the plan names them.
//!
//! Account ids are `*` unless given (ARNs of EFS file systems and EBS volumes hold one;
//! EBS snapshot ARNs never do). Describe calls cannot be restricted to a resource, so
//! they are granted on `*`. Tags written while creating EBS resources are allowed only
//! in that create call (`ec2:CreateAction`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::Options;
use crate::graph::StepGraph;
use crate::steps::{Action, SnapshotSource, WaitCondition};

/// One `Allow` statement: actions on resources, optionally under a condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub actions: BTreeSet<String>,
    pub resources: BTreeSet<String>,
    /// `StringEquals` on `ec2:CreateAction`, for `ec2:CreateTags`.
    pub create_action: Option<String>,
}

/// An IAM policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IamPolicy {
    pub statements: Vec<Statement>,
}

impl IamPolicy {
    /// The policy as IAM reads it.
    pub fn to_json(&self) -> Value {
        let statements: Vec<Value> = self
            .statements
            .iter()
            .map(|s| {
                let mut statement = json!({
                    "Effect": "Allow",
                    "Action": s.actions.iter().collect::<Vec<_>>(),
                    "Resource": s.resources.iter().collect::<Vec<_>>(),
                });
                if let Some(action) = &s.create_action {
                    statement["Condition"] = json!({ "StringEquals": { "ec2:CreateAction": action } });
                }
                statement
            })
            .collect();
        json!({ "Version": "2012-10-17", "Statement": statements })
    }

    /// Every action the policy allows.
    pub fn actions(&self) -> BTreeSet<String> {
        self.statements.iter().flat_map(|s| s.actions.iter().cloned()).collect()
    }
}

/// One action on one resource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    action: &'static str,
    resource: String,
    create_action: Option<&'static str>,
}

/// The policy of the plan's cloud steps; `None` when it has none.
pub fn policy(graph: &StepGraph, options: &Options<'_>) -> Option<IamPolicy> {
    let account = options.account_id.clone().unwrap_or_else(|| "*".into());
    let arns = Arns { account };
    let mut grants = BTreeSet::new();
    for (_, step) in graph.steps() {
        let Some(action) = step.action() else { continue };
        grants.extend(plan_reads(action));
        if !options.read_only {
            grants.extend(step_calls(action, &arns));
            if options.rollback {
                grants.extend(undo_calls(action, &arns));
            }
        }
    }
    if grants.is_empty() {
        return None;
    }
    Some(statements(grants))
}

/// `dr plan` reads the EFS state of every region an EFS step touches
/// (`cloud::read::add_efs_state`): every replication and every file system, so `*`.
fn plan_reads(action: &Action) -> Vec<Grant> {
    let efs_wait = |w: &crate::steps::WaitParams| {
        matches!(w.condition, WaitCondition::EfsReplicationDeleted { .. } | WaitCondition::EfsReplicationSynced { .. })
    };
    match action {
        Action::EfsDeleteReplication(_) | Action::EfsCreateReplication(_) | Action::EfsSetOverwriteProtection(_) => {
            vec![
                any("elasticfilesystem:DescribeReplicationConfigurations"),
                any("elasticfilesystem:DescribeFileSystems"),
            ]
        }
        // One DescribeVolumes and one DescribeSnapshots per region (`cloud::ebs_report`).
        Action::EbsSnapshot(_) | Action::EbsCopySnapshot(_) | Action::EbsCreateVolume(_) => {
            vec![any("ec2:DescribeVolumes"), any("ec2:DescribeSnapshots")]
        }
        Action::Wait(w) if efs_wait(w) => {
            vec![
                any("elasticfilesystem:DescribeReplicationConfigurations"),
                any("elasticfilesystem:DescribeFileSystems"),
            ]
        }
        _ => Vec::new(),
    }
}

fn any(action: &'static str) -> Grant {
    Grant { action, resource: "*".into(), create_action: None }
}

fn on(action: &'static str, resource: String) -> Grant {
    Grant { action, resource, create_action: None }
}

fn tags(resource: String, create_action: &'static str) -> Grant {
    Grant { action: "ec2:CreateTags", resource, create_action: Some(create_action) }
}

struct Arns {
    account: String,
}

impl Arns {
    fn file_system(&self, region: &str, id: &str) -> String {
        format!("arn:aws:elasticfilesystem:{region}:{}:file-system/{id}", self.account)
    }

    fn volume(&self, region: &str, id: &str) -> String {
        format!("arn:aws:ec2:{region}:{}:volume/{id}", self.account)
    }

    /// A key given as an ARN is used as it is, an id names one in `region`. IAM does not
    /// match aliases in `Resource` for these operations, so an alias grants the region's keys.
    fn kms_key(&self, region: &str, key: &str) -> String {
        match key {
            arn if arn.starts_with("arn:") && !arn.contains(":alias/") => arn.to_string(),
            alias if alias.starts_with("alias/") || alias.contains(":alias/") => {
                format!("arn:aws:kms:{region}:{}:key/*", self.account)
            }
            id => format!("arn:aws:kms:{region}:{}:key/{id}", self.account),
        }
    }

    fn snapshot(region: &str, source: &SnapshotSource) -> String {
        match source {
            SnapshotSource::Id(id) => format!("arn:aws:ec2:{region}::snapshot/{id}"),
            SnapshotSource::FromStep(_) => format!("arn:aws:ec2:{region}::snapshot/*"),
        }
    }
}

/// The calls a cloud step makes (see `cloud::efs`; the EBS kinds by their EC2 actions).
fn step_calls(action: &Action, arns: &Arns) -> Vec<Grant> {
    const DESCRIBE_REPLICATIONS: &str = "elasticfilesystem:DescribeReplicationConfigurations";
    match action {
        // Every EFS step reads its region's replications first (adoption after a crash).
        Action::EfsDeleteReplication(p) => vec![
            any(DESCRIBE_REPLICATIONS),
            // The source file system may live in another region than the call is made in.
            on("elasticfilesystem:DeleteReplicationConfiguration", arns.file_system("*", &p.source_file_system_id)),
        ],
        Action::EfsCreateReplication(p) => {
            let mut grants = vec![
                any(DESCRIBE_REPLICATIONS),
                on(
                    "elasticfilesystem:CreateReplicationConfiguration",
                    arns.file_system(&p.region, &p.source_file_system_id),
                ),
            ];
            if let Some(destination) = &p.destination_file_system_id {
                grants.push(on(
                    "elasticfilesystem:CreateReplicationConfiguration",
                    arns.file_system(&p.destination_region, destination),
                ));
            }
            grants
        }
        Action::EfsSetOverwriteProtection(p) => vec![
            any(DESCRIBE_REPLICATIONS),
            on("elasticfilesystem:DescribeFileSystems", arns.file_system(&p.region, &p.file_system_id)),
            on("elasticfilesystem:UpdateFileSystemProtection", arns.file_system(&p.region, &p.file_system_id)),
        ],
        Action::Wait(w) => match &w.condition {
            WaitCondition::EfsReplicationDeleted { .. } | WaitCondition::EfsReplicationSynced { .. } => {
                vec![any(DESCRIBE_REPLICATIONS)]
            }
            WaitCondition::EbsSnapshotCompleted { .. } => vec![any("ec2:DescribeSnapshots")],
            _ => Vec::new(),
        },
        Action::EbsSnapshot(p) => {
            let snapshots = format!("arn:aws:ec2:{}::snapshot/*", p.region);
            vec![
                on("ec2:CreateSnapshot", arns.volume(&p.region, &p.volume_id)),
                on("ec2:CreateSnapshot", snapshots.clone()),
                tags(snapshots, "CreateSnapshot"),
                any("ec2:DescribeSnapshots"),
            ]
        }
        Action::EbsCopySnapshot(p) => {
            let copies = format!("arn:aws:ec2:{}::snapshot/*", p.region);
            let mut grants = vec![
                on("ec2:CopySnapshot", Arns::snapshot(&p.source_region, &p.snapshot)),
                on("ec2:CopySnapshot", copies.clone()),
                tags(copies, "CopySnapshot"),
                any("ec2:DescribeSnapshots"),
            ];
            // An encrypted copy is re-encrypted with the destination's key: EBS uses the
            // key on the caller's behalf, which needs these on the key.
            if let Some(key) = &p.kms_key_id {
                let key = arns.kms_key(&p.region, key);
                for action in [
                    "kms:CreateGrant",
                    "kms:Decrypt",
                    "kms:DescribeKey",
                    "kms:GenerateDataKeyWithoutPlaintext",
                    "kms:ReEncrypt*",
                ] {
                    grants.push(on(action, key.clone()));
                }
            }
            grants
        }
        Action::EbsCreateVolume(p) => {
            let volumes = arns.volume(&p.region, "*");
            vec![
                on("ec2:CreateVolume", volumes.clone()),
                on("ec2:CreateVolume", Arns::snapshot(&p.region, &p.snapshot)),
                tags(volumes, "CreateVolume"),
                any("ec2:DescribeVolumes"),
            ]
        }
        _ => Vec::new(),
    }
}

/// What `dr rollback` calls to compensate a cloud step (`cloud::ebs`): it finds what the
/// step made by its tags and deletes it. EFS steps are not compensated.
fn undo_calls(action: &Action, arns: &Arns) -> Vec<Grant> {
    match action {
        Action::EbsSnapshot(p) => {
            vec![
                any("ec2:DescribeSnapshots"),
                on("ec2:DeleteSnapshot", format!("arn:aws:ec2:{}::snapshot/*", p.region)),
            ]
        }
        Action::EbsCopySnapshot(p) => {
            vec![
                any("ec2:DescribeSnapshots"),
                on("ec2:DeleteSnapshot", format!("arn:aws:ec2:{}::snapshot/*", p.region)),
            ]
        }
        Action::EbsCreateVolume(p) => {
            vec![any("ec2:DescribeVolumes"), on("ec2:DeleteVolume", arns.volume(&p.region, "*"))]
        }
        _ => Vec::new(),
    }
}

/// Grants folded into statements: one per action and condition, resources together.
fn statements(grants: BTreeSet<Grant>) -> IamPolicy {
    let mut by_action: BTreeMap<(&str, Option<&str>), BTreeSet<String>> = BTreeMap::new();
    for grant in grants {
        by_action.entry((grant.action, grant.create_action)).or_default().insert(grant.resource);
    }
    // Actions on the same resources (and no condition) share a statement.
    let mut by_resources: BTreeMap<(BTreeSet<String>, Option<&str>), BTreeSet<String>> = BTreeMap::new();
    for ((action, condition), resources) in by_action {
        by_resources.entry((resources, condition)).or_default().insert(action.to_string());
    }
    let statements = by_resources
        .into_iter()
        .map(|((resources, condition), actions)| Statement {
            actions,
            resources,
            create_action: condition.map(String::from),
        })
        .collect();
    IamPolicy { statements }
}
