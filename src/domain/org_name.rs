use super::Invalid;

/// An organization name: trimmed, 1–200 characters, no control characters. Unique
/// case-insensitively (enforced by the database's `organizations_name_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Invalid::new(
                "invalid_organization_name",
                "organization_name must be 1 to 200 characters without control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
