use secrecy::{ExposeSecret, SecretString};

use super::Invalid;

/// bcrypt reads at most 72 bytes and silently ignores the rest; we refuse longer passwords
/// instead of truncating them.
const MAX_BYTES: usize = 72;
const MIN_BYTES: usize = 8;

/// A password of acceptable length, never logged (Debug is redacted by `SecretString`).
#[derive(Debug)]
pub struct Password(SecretString);

impl Password {
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        if raw.len() < MIN_BYTES || raw.len() > MAX_BYTES {
            return Err(Invalid::new(
                "invalid_password",
                format!("password must be {MIN_BYTES} to {MAX_BYTES} bytes long"),
            ));
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_counted_in_bytes() {
        assert!(Password::parse("1234567".into()).is_err());
        assert!(Password::parse("12345678".into()).is_ok());
        assert!(Password::parse("a".repeat(72)).is_ok());
        assert!(Password::parse("a".repeat(73)).is_err());
        // 24 three-byte characters are 72 bytes; 25 are 75.
        assert!(Password::parse("€".repeat(24)).is_ok());
        assert!(Password::parse("€".repeat(25)).is_err());
    }
}
