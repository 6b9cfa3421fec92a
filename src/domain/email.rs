use std::fmt;

use super::Invalid;

/// An email address as the user typed it (trimmed). Uniqueness and login compare it
/// case-insensitively in the database (`lower(email)`), so the stored case is cosmetic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let email = raw.trim();
        let invalid = || Invalid::new("invalid_email", "email must look like name@example.com");
        if email.len() < 3 || email.len() > 254 {
            return Err(invalid());
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.rsplit_once('@').ok_or_else(invalid)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') || local.contains('@') {
            return Err(invalid());
        }
        Ok(Self(email.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_addresses_and_trims() {
        assert_eq!(Email::parse("  Ada@Example.com ").unwrap().as_str(), "Ada@Example.com");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in ["", "ada", "@example.com", "ada@", "a b@example.com", "a@b@c", "a\0@b.c"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
