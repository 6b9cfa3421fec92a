//! A filename search inside a listing: which files a term can match, read through the suffix
//! table (V12), and the `ILIKE` pattern that checks them.

/// Suffix hits up to which a search goes through the suffix table (V12); above, its term is
/// common enough that walking the sort order finds a page sooner.
const SPARSE_HITS: i64 = 1000;

/// The SQL of a filename search whose term is parameter `$n`: the files whose name has a
/// suffix starting with the term (lowercased and cut as `app.name_suffixes` cuts them), read
/// by a range scan, which row-level security allows on an index because text comparisons are
/// leakproof (ILIKE is not: docs/rls.md, "Traps").
pub(super) struct Search {
    pub(super) candidates: String,
    pub(super) probe: String,
}

impl Search {
    pub(super) fn new(n: usize) -> Self {
        let prefix = format!("(left(lower(${n}), 24) collate \"C\")");
        // The limit is never reached where candidates are used (the probe saw at most
        // SPARSE_HITS), but it tells the planner how few they are: a lookup of each beats a
        // scan of the organization's files.
        let candidates = format!(
            concat!(
                "select s.file_id from app.file_name_suffixes s where s.organization_id = ",
                tenant_org!(),
                " and s.suffix >= {prefix} and s.suffix < ({prefix} || chr(1114111)) limit {limit}"
            ),
            prefix = prefix,
            limit = SPARSE_HITS + 1
        );
        let probe = format!("with probe as (select count(*) <= {SPARSE_HITS} as sparse from ({candidates}) hits)");
        Self { candidates, probe }
    }
}

/// `ILIKE` pattern for a substring: `%`, `_` and the escape character match themselves.
pub(super) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}
