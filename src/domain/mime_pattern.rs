use super::Invalid;

/// The most types an organization's `allowed_types` lists (the database says the same).
pub const MAX_ALLOWED_TYPES: usize = 50;

/// A MIME type pattern an organization accepts uploads of (#27): `type/subtype` (`application/pdf`),
/// `type/*` (`image/*`) or `*/*`. Lowercase, each part a token of RFC 6838's restricted
/// characters, at most 127 characters each. Compared with the type the worker sniffs from a
/// file's content, case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimePattern(String);

impl MimePattern {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let pattern = raw.trim().to_ascii_lowercase();
        let invalid = || {
            Invalid::new("invalid_allowed_types", format!("{raw:?} is not a MIME pattern like image/png or image/*"))
        };
        let (kind, subtype) = pattern.split_once('/').ok_or_else(invalid)?;
        let token = |part: &str| {
            (1..=127).contains(&part.len())
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
        };
        let valid = match (kind, subtype) {
            ("*", "*") => true,
            (kind, "*") => token(kind),
            (kind, subtype) => token(kind) && token(subtype),
        };
        valid.then_some(Self(pattern)).ok_or_else(invalid)
    }

    /// The organization's list: 1 to [`MAX_ALLOWED_TYPES`] patterns, duplicates dropped.
    pub fn parse_list(raw: &[String]) -> Result<Vec<Self>, Invalid> {
        if raw.is_empty() || raw.len() > MAX_ALLOWED_TYPES {
            return Err(Invalid::new(
                "invalid_allowed_types",
                format!("allowed_types lists 1 to {MAX_ALLOWED_TYPES} patterns (null accepts every type)"),
            ));
        }
        let mut patterns: Vec<Self> = Vec::with_capacity(raw.len());
        for pattern in raw.iter().map(|p| Self::parse(p)) {
            let pattern = pattern?;
            if !patterns.contains(&pattern) {
                patterns.push(pattern);
            }
        }
        Ok(patterns)
    }

    /// Whether `mime_type` (e.g. `image/png`, parameters ignored) is one this pattern accepts.
    pub fn matches(&self, mime_type: &str) -> bool {
        let essence = mime_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match self.0.split_once('/') {
            Some(("*", "*")) => true,
            Some((kind, "*")) => essence.split_once('/').is_some_and(|(k, _)| k == kind),
            _ => essence == self.0,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_accept_their_types_only() {
        let pdf = MimePattern::parse("application/pdf").unwrap();
        let images = MimePattern::parse(" Image/* ").unwrap();
        let any = MimePattern::parse("*/*").unwrap();
        assert!(pdf.matches("application/pdf") && pdf.matches("Application/PDF; charset=binary"));
        assert!(!pdf.matches("application/pdfx") && !pdf.matches("image/png"));
        assert!(images.matches("image/png") && images.matches("image/svg+xml"));
        assert!(!images.matches("application/png") && !images.matches("imagex/png"));
        assert!(any.matches("text/plain"));
        assert_eq!(images.as_str(), "image/*");
    }

    #[test]
    fn malformed_patterns_and_lists_are_refused() {
        for raw in ["", "image", "image/", "/png", "*/png", "image/**", "ima ge/png", "image/png/x", "../etc", "a\0/b"]
        {
            assert!(MimePattern::parse(raw).is_err(), "{raw:?}");
        }
        assert!(MimePattern::parse_list(&[]).is_err());
        assert!(MimePattern::parse_list(&vec!["image/png".to_owned(); MAX_ALLOWED_TYPES + 1]).is_err());
        let list = MimePattern::parse_list(&["image/png".into(), "IMAGE/PNG".into(), "text/*".into()]).unwrap();
        assert_eq!(list.iter().map(MimePattern::as_str).collect::<Vec<_>>(), ["image/png", "text/*"]);
    }
}
