//! Kubernetes resource quantities (`10Gi`, `500M`, `1.5e3`) as byte counts, and back.

/// Parses a quantity into a whole number of units, rounding fractions up like the API server
/// does for storage. Returns `None` for malformed text.
pub fn parse(text: &str) -> Option<u128> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number.starts_with('-') {
        return None;
    }
    let value: f64 = number.trim_start_matches('+').parse().ok()?;
    let factor = suffix_factor(suffix)?;
    let bytes = (value * factor).ceil();
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u128)
}

fn suffix_factor(suffix: &str) -> Option<f64> {
    const K: f64 = 1024.0;
    Some(match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => K,
        "Mi" => K * K,
        "Gi" => K * K * K,
        "Ti" => K * K * K * K,
        "Pi" => K * K * K * K * K,
        "Ei" => K * K * K * K * K * K,
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    })
}

/// Formats bytes the way `kubectl` users read them: the largest binary suffix that divides evenly.
pub fn format_bytes(bytes: u128) -> String {
    const SUFFIXES: [(&str, u32); 5] = [("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)];
    for (suffix, shift) in SUFFIXES {
        let unit = 1u128 << shift;
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_decimal_and_exponent_suffixes() {
        assert_eq!(parse("1Gi"), Some(1 << 30));
        assert_eq!(parse("10G"), Some(10_000_000_000));
        assert_eq!(parse("1.5Ki"), Some(1536));
        assert_eq!(parse("2e3"), Some(2000));
        assert_eq!(parse("100"), Some(100));
        assert_eq!(parse("Gi"), None);
        assert_eq!(parse("5Qi"), None);
        assert_eq!(parse("-1Gi"), None);
    }

    #[test]
    fn formats_with_the_largest_even_binary_suffix() {
        assert_eq!(format_bytes(1 << 30), "1Gi");
        assert_eq!(format_bytes(3 << 20), "3Mi");
        assert_eq!(format_bytes(1000), "1000");
    }
}
