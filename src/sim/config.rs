//! Settings of a simulated cluster: clock mode, controller delays, the EBS-like volume
//! modification limit, default zones, and fault injection rules.

use std::time::Duration;

use serde::Deserialize;

/// How the sim behaves; `SimConfig::default()` is a plausible small cloud cluster.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Start with the clock paused (tests then `advance()` it).
    pub paused: bool,
    /// Sim seconds per real second while the clock runs.
    pub speed: f64,
    /// Time from a pod being scheduled (and its volumes bound) to Running and Ready.
    pub pod_ready_after: Duration,
    /// Default time from VolumeSnapshot creation to `readyToUse`; a VolumeSnapshotClass
    /// annotation `sim.drplan.dev/ready-after: 30s` overrides it.
    pub snapshot_ready_after: Duration,
    /// Time for an accepted volume expansion to show in `status.capacity`.
    pub resize_after: Duration,
    /// How long the GitOps controllers (Argo CD self-heal, Flux) and the operator-like
    /// reconciler leave drift of what they manage before reverting it (Argo CD's
    /// `--self-heal-timeout-seconds`, 5s by default); an annotation
    /// `sim.drplan.dev/revert-after: 30s` on the Application, Kustomization or custom
    /// resource overrides it.
    pub revert_after: Duration,
    /// Per-volume modification rate limit (EBS allows a few modifications per window).
    pub modification_limit: ModificationLimit,
    /// Zones that default nodes are created in when the manifests define no nodes.
    pub zones: Vec<String>,
    /// Watch events kept for replay; older resourceVersions get 410 Gone.
    pub watch_history: usize,
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            paused: false,
            speed: 1.0,
            pod_ready_after: Duration::from_secs(2),
            snapshot_ready_after: Duration::from_secs(5),
            resize_after: Duration::from_secs(5),
            revert_after: Duration::from_secs(5),
            modification_limit: ModificationLimit::default(),
            zones: vec!["us-east-1a".into(), "us-east-1b".into(), "us-east-1c".into()],
            watch_history: 10_000,
            faults: Faults::default(),
        }
    }
}

/// At most `max` modifications of one volume within any rolling `window` of sim time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModificationLimit {
    pub max: usize,
    pub window: Duration,
}

impl Default for ModificationLimit {
    fn default() -> Self {
        ModificationLimit { max: 4, window: Duration::from_secs(24 * 3600) }
    }
}

/// Fault injection: rules tried in order for every request; `seed` makes runs repeat.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
}

/// One fault rule. `verb` and `resource` (plural, e.g. `statefulsets`) match all when absent.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultRule {
    pub verb: Option<String>,
    pub resource: Option<String>,
    /// HTTP status to fail with: 409, 429, 500 or 503.
    pub status: Option<u16>,
    /// Fraction of matching requests that fail, 0.0..=1.0 (default 1.0).
    pub rate: Option<f64>,
    /// Fail only this many matching requests, then let them through: a fault script
    /// ("the first two creates conflict", a burst of throttling that ends) rather than a
    /// dice roll. Counted down as it fires.
    pub times: Option<u32>,
    /// Added latency before the request is handled.
    #[serde(default, with = "humantime_serde_opt")]
    pub latency: Option<Duration>,
    /// Added latency after the request is handled, before it is answered: the change is
    /// made but the client does not know yet (a slow or lost response).
    #[serde(default, with = "humantime_serde_opt")]
    pub response_latency: Option<Duration>,
    /// Watch streams end after this many events.
    pub watch_cut_after_events: Option<usize>,
    /// Watch streams end after this long (real time).
    #[serde(default, with = "humantime_serde_opt")]
    pub watch_cut_after: Option<Duration>,
    /// With `status: 429` (or 503): the `Retry-After` the answer carries, in whole seconds
    /// rounded up, as API Priority and Fairness sends it (default 1 s for 429).
    #[serde(default, with = "humantime_serde_opt")]
    pub retry_after: Option<Duration>,
}

/// Durations in fault files are humantime strings (`250ms`, `5s`).
mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

impl FaultRule {
    pub fn matches(&self, verb: &str, resource: &str) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb) && self.resource.as_deref().is_none_or(|r| r == resource)
    }

    /// Whether this rule fails the request it matched: its status, a rate draw, and what
    /// is left of `times` (spent here when it fires).
    pub fn fires(&mut self, rng: &mut XorShift) -> Option<u16> {
        let status = self.status?;
        if self.times == Some(0) || rng.next_f64() >= self.rate.unwrap_or(1.0) {
            return None;
        }
        if let Some(left) = self.times.as_mut() {
            *left -= 1;
        }
        Some(status)
    }
}

/// A small xorshift64* generator: deterministic per seed, no dependency needed.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        // Zero is a fixed point of xorshift; any other constant start works.
        XorShift(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (XorShift::new(7), XorShift::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], XorShift::new(8).next_u64());
        assert!((0..100).map(|_| a.next_f64()).all(|f| (0.0..1.0).contains(&f)));
    }

    #[test]
    fn fault_rules_parse_from_json() {
        let faults: Faults = serde_json::from_str(
            r#"{"seed": 3, "rules": [{"verb": "patch", "resource": "statefulsets", "status": 409, "rate": 0.5, "latency": "20ms", "retryAfter": "2s", "times": 3}]}"#,
        )
        .unwrap();
        assert_eq!(faults.rules[0].latency, Some(Duration::from_millis(20)));
        assert_eq!(faults.rules[0].retry_after, Some(Duration::from_secs(2)));
        assert_eq!(faults.rules[0].times, Some(3));
        assert!(faults.rules[0].matches("patch", "statefulsets"));
        assert!(!faults.rules[0].matches("get", "statefulsets"));
    }
}
