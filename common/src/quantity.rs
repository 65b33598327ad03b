//! Kubernetes resource quantities (`"3800m"`, `"2"`, `"15Gi"`, `"1e3"`), parsed into the units
//! realload computes with: CPU in millicores, memory in bytes.
//!
//! k8s-openapi models a quantity as an opaque string, so the parsing lives here. Values are rounded
//! up, as the API server does when it canonicalises a quantity to its smallest unit.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid quantity {quantity:?}: {reason}")]
pub struct QuantityError {
    pub quantity: String,
    pub reason: &'static str,
}

/// Parses a quantity into its value in base units (cores, bytes) as `f64`.
pub fn parse_quantity(quantity: &str) -> Result<f64, QuantityError> {
    let fail = |reason| QuantityError {
        quantity: quantity.to_string(),
        reason,
    };
    let text = quantity.trim();
    if text.is_empty() {
        return Err(fail("empty"));
    }
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    let mantissa: f64 = number.parse().map_err(|_| fail("not a number"))?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| fail("bad exponent"))?;
            10f64.powi(power)
        }
        _ => return Err(fail("unknown suffix")),
    };
    let value = mantissa * multiplier;
    if !value.is_finite() {
        return Err(fail("not finite"));
    }
    if value < 0.0 {
        return Err(fail("negative"));
    }
    Ok(value)
}

/// CPU quantity in millicores (`"3800m"` → 3800, `"2"` → 2000), rounded up.
pub fn cpu_millis(quantity: &str) -> Result<u64, QuantityError> {
    // The small epsilon keeps 0.1 × 1000 = 100.00000000000001 from rounding up to 101.
    parse_quantity(quantity).map(|cores| (cores * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

/// Memory quantity in bytes (`"15Gi"`, `"1G"`, `"128974848"`), rounded up.
pub fn bytes(quantity: &str) -> Result<u64, QuantityError> {
    parse_quantity(quantity).map(|b| (b - 1e-6).ceil().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_forms() {
        assert_eq!(cpu_millis("2"), Ok(2000));
        assert_eq!(cpu_millis("3800m"), Ok(3800));
        assert_eq!(cpu_millis("0.5"), Ok(500));
        assert_eq!(cpu_millis("0.1"), Ok(100));
        assert_eq!(cpu_millis("1.5"), Ok(1500));
        assert_eq!(cpu_millis("250m"), Ok(250));
        assert_eq!(cpu_millis("100u"), Ok(1));
        assert_eq!(
            cpu_millis("1e3m"),
            Err(QuantityError {
                quantity: "1e3m".into(),
                reason: "bad exponent"
            })
        );
        assert_eq!(cpu_millis("2e0"), Ok(2000));
    }

    #[test]
    fn memory_forms() {
        assert_eq!(bytes("15Gi"), Ok(15 * 1024 * 1024 * 1024));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("128974848"), Ok(128_974_848));
        assert_eq!(bytes("129e6"), Ok(129_000_000));
        assert_eq!(bytes("123Mi"), Ok(123 * 1024 * 1024));
        assert_eq!(bytes("0.5Gi"), Ok(512 * 1024 * 1024));
        assert_eq!(bytes("1Ki"), Ok(1024));
    }

    #[test]
    fn rejects_garbage_with_reason() {
        assert_eq!(parse_quantity("").unwrap_err().reason, "empty");
        assert_eq!(parse_quantity("abc").unwrap_err().reason, "not a number");
        assert_eq!(parse_quantity("2X").unwrap_err().reason, "unknown suffix");
        assert_eq!(parse_quantity("-1").unwrap_err().reason, "negative");
        assert!(parse_quantity("1e999").is_err());
    }
}
