use std::fmt;

use unicode_normalization::UnicodeNormalization;

use super::Invalid;

/// Filesystems and most tools cap a name at 255 bytes.
const MAX_BYTES: usize = 255;

/// A display name for a stored file. The bytes on disk are never stored under this name (they
/// live at `UPLOAD_DIR/{org}/{file_id}`), so it only has to be safe to show and to send back in
/// `Content-Disposition`.
///
/// Parsing normalizes (Unicode NFC, surrounding whitespace trimmed) and refuses what cannot be
/// made safe without guessing: path separators and `.`/`..` (a name, not a path), control
/// characters including NUL, bidirectional overrides that disguise an extension
/// (`invoice\u{202E}fdp.exe` displays as `invoiceexe.pdf`), and names over 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filename(String);

impl Filename {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let name: String = raw.nfc().collect();
        let name = name.trim();
        let invalid = |why: &str| Invalid::new("invalid_filename", format!("filename {why}"));
        if name.is_empty() {
            return Err(invalid("must not be empty"));
        }
        if name.len() > MAX_BYTES {
            return Err(invalid("must be at most 255 bytes"));
        }
        if name == "." || name == ".." || name.contains(['/', '\\']) {
            return Err(invalid("must be a plain name, not a path"));
        }
        if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
            return Err(invalid("must not contain control or bidirectional-override characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

impl fmt::Display for Filename {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ordinary_and_unicode_names() {
        assert_eq!(Filename::parse(" report 2024.pdf ").unwrap().as_str(), "report 2024.pdf");
        assert_eq!(Filename::parse("résumé-文件-ملف.txt").unwrap().as_str(), "résumé-文件-ملف.txt");
        // NFD input is stored composed, so equal-looking names are equal.
        assert_eq!(Filename::parse("re\u{301}sume\u{301}").unwrap().as_str(), "résumé");
    }

    #[test]
    fn refuses_hostile_names() {
        for bad in [
            "",
            "   ",
            ".",
            "..",
            "../../etc/passwd",
            "..\\..\\boot.ini",
            "a/b",
            "nul\0byte.txt",
            "line\nbreak",
            "invoice\u{202E}fdp.exe",
        ] {
            assert!(Filename::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Filename::parse(&"a".repeat(256)).is_err());
        assert!(Filename::parse(&"a".repeat(10 * 1024)).is_err());
        assert!(Filename::parse(&"a".repeat(255)).is_ok());
    }
}
