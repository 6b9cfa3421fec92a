//! The validation rules, as a pure function of the record and what is on disk.

use crate::{
    db::files::{PendingFile, Validation},
    domain::{FileId, FileStatus, MimePattern},
    storage::Inspection,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ready { mime_type: String },
    Failed { reason: String },
}

impl Verdict {
    /// The verdict as recorded on the file's row.
    pub fn for_file(self, file_id: FileId) -> Validation {
        match self {
            Verdict::Ready { mime_type } => {
                Validation { file_id, status: FileStatus::Ready, mime_type: Some(mime_type), error_message: None }
            }
            Verdict::Failed { reason } => {
                Validation { file_id, status: FileStatus::Failed, mime_type: None, error_message: Some(reason) }
            }
        }
    }
}

/// Size and hash must match what the upload recorded; the type sniffed from the content must
/// agree with the extension:
/// - an extension whose signature we know (png, pdf, zip, …) requires content of that type;
/// - content of a known type requires an extension that names it (`.jpeg` for JPEG is fine);
/// - a name without extension, or content we cannot recognize under an extension we cannot
///   check (txt, csv, …), passes.
///
/// The recorded MIME type is the sniffed one, else the extension's, else octet-stream; when the
/// organization lists the types it accepts (V28), that type must match one of them.
pub fn judge(record: &PendingFile, found: &Inspection) -> Verdict {
    let failed = |reason: String| Verdict::Failed { reason };
    if i64::try_from(found.size).ok() != Some(record.size) {
        return failed(format!("the stored file is {} bytes but {} bytes were uploaded", found.size, record.size));
    }
    if found.sha256 != record.sha256 {
        return failed("the stored file's content changed since upload (sha256 mismatch)".into());
    }
    let sniffed = infer::get(&found.head);
    let extension = extension(&record.filename);
    let named_types =
        |ext: &str| mime_guess::from_ext(ext).iter().map(|m| m.essence_str().to_owned()).collect::<Vec<_>>();
    let agrees = match (&extension, &sniffed) {
        (Some(ext), _) if infer::is_supported(ext) => infer::is(&found.head, ext),
        (Some(ext), Some(kind)) => named_types(ext).iter().any(|m| m == kind.mime_type()),
        _ => true,
    };
    if !agrees {
        let ext = extension.unwrap_or_default();
        let content = sniffed.map_or("unrecognized data (e.g. text)".to_owned(), |k| k.mime_type().to_owned());
        return failed(format!("the content is {content}, which does not match the .{ext} extension"));
    }
    let mime_type = sniffed
        .map(|k| k.mime_type().to_owned())
        .or_else(|| extension.as_deref().and_then(|ext| named_types(ext).into_iter().next()))
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    if let Some(allowed) = &record.allowed_types {
        // Patterns the database holds were parsed on the way in; one it cannot parse accepts nothing.
        let accepted = allowed.iter().filter_map(|p| MimePattern::parse(p).ok()).any(|p| p.matches(&mime_type));
        if !accepted {
            return failed(format!(
                "the content is {mime_type}, which this organization does not accept (allowed: {})",
                allowed.join(", ")
            ));
        }
    }
    Verdict::Ready { mime_type }
}

/// The lowercased part after the last dot, if the name has a stem and an extension.
fn extension(filename: &str) -> Option<String> {
    let (stem, ext) = filename.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_lowercase())
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R'];
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0];

    fn case(filename: &str, bytes: &[u8]) -> Verdict {
        allowing(filename, bytes, None)
    }

    fn allowing(filename: &str, bytes: &[u8], allowed_types: Option<&[&str]>) -> Verdict {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let record = PendingFile {
            filename: filename.into(),
            size: bytes.len() as i64,
            sha256: sha256.clone(),
            org_within_quota: true,
            allowed_types: allowed_types.map(|types| types.iter().map(|t| (*t).to_owned()).collect()),
        };
        judge(&record, &Inspection { size: bytes.len() as u64, sha256, head: bytes.to_vec() })
    }

    fn ready(mime: &str) -> Verdict {
        Verdict::Ready { mime_type: mime.into() }
    }

    #[test]
    fn content_matching_its_extension_is_ready_with_the_sniffed_type() {
        assert_eq!(case("logo.png", PNG), ready("image/png"));
        assert_eq!(case("LOGO.PNG", PNG), ready("image/png"));
        assert_eq!(case("photo.jpg", JPEG), ready("image/jpeg"));
        assert_eq!(case("photo.jpeg", JPEG), ready("image/jpeg"));
        assert_eq!(case("notes.txt", b"hello"), ready("text/plain"));
        assert_eq!(case("data.csv", b"a,b\n1,2\n"), ready("text/csv"));
        assert_eq!(case("Makefile", b"all:\n"), ready("application/octet-stream"));
        assert_eq!(case("image-without-extension", PNG), ready("image/png"));
    }

    #[test]
    fn content_contradicting_its_extension_fails() {
        for (name, bytes) in
            [("fake.png", b"just text".as_slice()), ("fake.png", JPEG), ("image.txt", PNG), ("doc.pdf", b"%NOT")]
        {
            match case(name, bytes) {
                Verdict::Failed { reason } => assert!(reason.contains("does not match"), "{name}: {reason}"),
                other => panic!("{name} should fail, got {other:?}"),
            }
        }
    }

    #[test]
    fn size_or_hash_differences_fail_first() {
        let record = PendingFile {
            filename: "a.txt".into(),
            size: 5,
            sha256: "0".repeat(64),
            org_within_quota: true,
            allowed_types: None,
        };
        let shorter = Inspection { size: 4, sha256: "0".repeat(64), head: b"abcd".to_vec() };
        assert!(matches!(judge(&record, &shorter), Verdict::Failed { reason } if reason.contains("4 bytes")));
        let changed = Inspection { size: 5, sha256: "1".repeat(64), head: b"abcde".to_vec() };
        assert!(matches!(judge(&record, &changed), Verdict::Failed { reason } if reason.contains("sha256")));
    }

    #[test]
    fn a_type_the_organization_does_not_accept_fails_by_its_content_not_its_name() {
        let images: &[&str] = &["image/*"];
        assert_eq!(allowing("logo.png", PNG, Some(images)), ready("image/png"));
        assert_eq!(allowing("photo", JPEG, Some(images)), ready("image/jpeg"));
        for (name, bytes) in [("notes.txt", b"hello".as_slice()), ("Makefile", b"all:\n")] {
            match allowing(name, bytes, Some(images)) {
                Verdict::Failed { reason } => {
                    assert!(reason.contains("does not accept (allowed: image/*)"), "{name}: {reason}")
                }
                other => panic!("{name} should fail, got {other:?}"),
            }
        }
        let pdf_only: &[&str] = &["application/pdf"];
        assert!(
            matches!(allowing("logo.png", PNG, Some(pdf_only)), Verdict::Failed { reason } if reason.contains("image/png"))
        );
    }
}
