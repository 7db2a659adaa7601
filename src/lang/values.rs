//! Scalar value types of the plan language: Kubernetes quantities and durations.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Kubernetes resource quantity of storage (`2Gi`, `500M`, `1.5Ti`, `1073741824`).
///
/// Kept as the text the user wrote (for display and round trips) plus its value in
/// bytes (for comparisons such as "restore smaller than source").
#[derive(Clone, Debug)]
pub struct Quantity {
    text: String,
    bytes: u128,
}

impl Quantity {
    pub fn bytes(&self) -> u128 {
        self.bytes
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Size in GiB, for human summaries ("data at risk").
    pub fn gib(&self) -> f64 {
        self.bytes as f64 / (1u128 << 30) as f64
    }

    pub fn from_bytes(bytes: u128) -> Quantity {
        let gi = 1u128 << 30;
        let mi = 1u128 << 20;
        let text = if bytes.is_multiple_of(gi) {
            format!("{}Gi", bytes / gi)
        } else if bytes.is_multiple_of(mi) {
            format!("{}Mi", bytes / mi)
        } else {
            bytes.to_string()
        };
        Quantity { text, bytes }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Largest storage size accepted: 1 EiB, a million times the largest single disk any
/// cloud offers (64 TiB), and far from `u64` (Kubernetes keeps quantities in an int64).
pub const MAX_BYTES: u128 = 1 << 60;

/// Longest duration accepted (timeouts, RTO, RPO): 366 days. Anything longer is a typo
/// (`999999999h`), and stays far from the limits of timers and timestamps.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

const SUFFIXES: &[(&str, u128)] = &[
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

impl FromStr for Quantity {
    type Err = String;
    fn from_str(text: &str) -> Result<Quantity, String> {
        let invalid = || {
            format!("invalid quantity `{text}`: expected a number with an optional unit such as 500Mi, 2Gi, 1Ti or 10G")
        };
        let trimmed = text.trim();
        let (number, multiplier) = SUFFIXES
            .iter()
            .find_map(|(suffix, mult)| trimmed.strip_suffix(suffix).map(|n| (n, *mult)))
            .unwrap_or((trimmed, 1));
        if number.is_empty()
            || !number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            || number.matches('.').count() > 1
        {
            return Err(invalid());
        }
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.len() > 20 || frac.len() > 9 {
            return Err(invalid());
        }
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
        let frac_value: u128 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| invalid())? };
        let scale = 10u128.pow(frac.len() as u32);
        let bytes = whole
            .checked_mul(multiplier)
            .and_then(|w| w.checked_add(frac_value * multiplier / scale))
            .ok_or_else(invalid)?;
        if bytes == 0 {
            return Err(format!("invalid quantity `{text}`: a storage size must be greater than zero"));
        }
        if bytes > MAX_BYTES {
            return Err(format!("invalid quantity `{text}`: a storage size must be at most 1Ei (2^60 bytes)"));
        }
        Ok(Quantity { text: trimmed.to_string(), bytes })
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        // Kubernetes accepts bare integers for quantities (`storage: 1073741824`).
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Int(i) => i.to_string(),
            Raw::Text(s) => s,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A Kubernetes storage quantity such as 500Mi, 2Gi or 1Ti.",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"},
                {"type": "integer", "minimum": 1}
            ]
        })
    }
}

/// A duration written like `90s`, `30m`, `1h30m` or `2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn as_secs(&self) -> u64 {
        self.0.as_secs()
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl FromStr for Duration {
    type Err = String;
    fn from_str(text: &str) -> Result<Duration, String> {
        let parsed = humantime::parse_duration(text.trim())
            .map_err(|e| format!("invalid duration `{text}`: {e}; write it like 90s, 30m, 1h30m or 2d"))?;
        if parsed.is_zero() {
            return Err(format!("invalid duration `{text}`: must be greater than zero"));
        }
        if parsed > MAX_DURATION {
            return Err(format!("invalid duration `{text}`: must be at most 366 days"));
        }
        Ok(Duration(parsed))
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration such as 90s, 30m, 1h30m or 2d.",
            "type": "string",
            "pattern": "^([0-9]+\\s*(ns|us|ms|s|sec|secs|m|min|mins|h|hr|hrs|d|days|w|weeks)\\s*)+$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_bytes() {
        let q = |s: &str| s.parse::<Quantity>().unwrap().bytes();
        assert_eq!(q("2Gi"), 2 << 30);
        assert_eq!(q("500M"), 500_000_000);
        assert_eq!(q("1.5Gi"), 3 << 29);
        assert_eq!(q("1073741824"), 1 << 30);
        assert!("4Gi".parse::<Quantity>().unwrap() > "2Gi".parse::<Quantity>().unwrap());
    }

    #[test]
    fn bad_quantities_are_refused() {
        for bad in [
            "",
            "Gi",
            "2GB",
            "-1Gi",
            "1.2.3Gi",
            "0",
            "two",
            "99999999999999999999999Ei",
            "18446744073709551616",
            "2Ei",
            "1025Pi",
        ] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad} should be invalid");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!("1h30m".parse::<Duration>().unwrap().as_secs(), 5400);
        assert!("soon".parse::<Duration>().is_err());
        assert!("0s".parse::<Duration>().is_err());
        assert_eq!("366d".parse::<Duration>().unwrap().as_secs(), 366 * 86400);
        for too_long in ["367d", "999999999h", "18446744073709551616ns", "584942417355y"] {
            assert!(too_long.parse::<Duration>().is_err(), "{too_long} should be refused");
        }
        assert_eq!("1Ei".parse::<Quantity>().unwrap().bytes(), 1 << 60);
    }
}
