//! The file listing: one page and its total in one round trip, for every combination of
//! filter, order and start.
//!
//! The statement's text depends only on the listing's [`Shape`] (which filters are present,
//! which order, which kind of start), never on its values: parameters are always bound, never
//! spliced, so each shape is prepared once per connection. Every shape the service can send
//! is written out in `sql/statements/list_page.sql` by a test, so a change to any of them is a
//! reviewed diff.
//!
//! Every order walks an index led by `organization_id` (V12), in either direction, with the id
//! as tie-breaker; a keyset start is a row comparison on the same columns, so a cursor page
//! costs what the first page costs, however deep, and no row is skipped or repeated when files
//! are added meanwhile.

use super::{
    search::{like_pattern, Search},
    FileRow, Param,
};
use crate::{
    db::{DbError, TenantRead},
    domain::FileStatus,
};

/// What the list shows, in which order, from where.
#[derive(Debug, Clone)]
pub struct Listing {
    pub status: Option<FileStatus>,
    /// Case-insensitive substring of the filename.
    pub search: Option<String>,
    pub sort: SortKey,
    pub direction: Direction,
    pub start: Start,
    pub limit: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    UploadedAt,
    Filename,
    Size,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

/// Where a page starts: after skipping rows (pages), or after a row (keyset, `cursor`).
#[derive(Debug, Clone)]
pub enum Start {
    Offset(i64),
    After(Position),
}

/// A row's place in one order: its sort key's value (as text) and its id, the tie-breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub key: String,
    pub id: uuid::Uuid,
}

impl SortKey {
    #[cfg(test)]
    const ALL: [SortKey; 3] = [SortKey::UploadedAt, SortKey::Filename, SortKey::Size];

    fn column(self) -> &'static str {
        match self {
            SortKey::UploadedAt => "f.uploaded_at",
            SortKey::Filename => "f.filename",
            SortKey::Size => "f.file_size_bytes",
        }
    }

    /// The column's name in the selected rows.
    fn output_column(self) -> &'static str {
        match self {
            SortKey::UploadedAt => "uploaded_at",
            SortKey::Filename => "filename",
            SortKey::Size => "file_size_bytes",
        }
    }

    fn sql_type(self) -> &'static str {
        match self {
            SortKey::UploadedAt => "timestamptz",
            SortKey::Filename => "text",
            SortKey::Size => "bigint",
        }
    }

    /// `row`'s value of this key, as the cursor carries it.
    fn value_of(self, row: &FileRow) -> String {
        match self {
            SortKey::UploadedAt => row.file.uploaded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            SortKey::Filename => row.file.filename.clone(),
            SortKey::Size => row.file.size.to_string(),
        }
    }
}

impl Direction {
    /// `order by … {order}`, and the comparison that keeps rows after a position.
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            Direction::Asc => ("asc", ">"),
            Direction::Desc => ("desc", "<"),
        }
    }
}

/// Matches above this many are not counted: a search's total is exact up to here.
pub const SEARCH_COUNT_LIMIT: i64 = 1_000;

pub struct Page {
    pub files: Vec<FileRow>,
    pub total: i64,
    /// The search matched more than [`SEARCH_COUNT_LIMIT`] files; `total` is that limit.
    pub total_capped: bool,
    /// Where the next page starts; `None` on the last.
    pub next: Option<Position>,
}

/// What the text of a listing's statements depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    sort: SortKey,
    direction: Direction,
    by_status: bool,
    search: bool,
    /// After a position (a cursor), not after skipping rows.
    keyset: bool,
}

/// The parameter numbers of a shape, in the order [`list_page`] binds them: the page's limit
/// (the count's cap, for a search's count), the status, the search's pattern and term, then
/// the offset or the position's key and id.
struct Numbers {
    status: Option<usize>,
    term: Option<(usize, usize)>,
    start: usize,
}

impl Shape {
    fn of(listing: &Listing) -> Self {
        Self {
            sort: listing.sort,
            direction: listing.direction,
            by_status: listing.status.is_some(),
            search: listing.search.is_some(),
            keyset: matches!(listing.start, Start::After(_)),
        }
    }

    /// Every shape the service can send.
    #[cfg(test)]
    fn all() -> impl Iterator<Item = Shape> {
        SortKey::ALL.into_iter().flat_map(|sort| {
            [Direction::Desc, Direction::Asc].into_iter().flat_map(move |direction| {
                (0..8u8).map(move |bits| Shape {
                    sort,
                    direction,
                    by_status: bits & 1 != 0,
                    search: bits & 2 != 0,
                    keyset: bits & 4 != 0,
                })
            })
        })
    }

    /// A name for the golden file.
    #[cfg(test)]
    fn name(self) -> String {
        let (order, _) = self.direction.sql();
        let mut name = format!("by {} {order}", self.sort.output_column());
        for (present, what) in [(self.by_status, "status"), (self.search, "search")] {
            if present {
                name.push_str(&format!(", {what}"));
            }
        }
        name.push_str(if self.keyset { ", after a cursor" } else { ", at an offset" });
        name
    }

    fn numbers(self) -> Numbers {
        let mut next = 2;
        let mut take = || {
            next += 1;
            next - 1
        };
        let status = self.by_status.then(&mut take);
        let term = self.search.then(|| (take(), take()));
        Numbers { status, term, start: take() }
    }

    /// `and …` of the filters both statements share.
    fn filters(self) -> String {
        let numbers = self.numbers();
        let mut filters = String::new();
        if let Some(n) = numbers.status {
            filters.push_str(&format!(" and f.status = ${n}"));
        }
        if let Some((pattern, _)) = numbers.term {
            filters.push_str(&format!(" and f.filename ilike ${pattern}"));
        }
        filters
    }

    /// The page's rows. The page of files is chosen before the uploaders are joined: the
    /// generic plan cannot know the organization's size, and with the join inside, its estimate
    /// of a page fell to one row, at which point sorting a bitmap scan of all the
    /// organization's files looked as cheap as walking the sort index (39 ms instead of 0.5
    /// for a page of a 50,000-file organization among 10,000; docs/performance.md). Alone, the
    /// page walks the index.
    fn page_sql(self) -> String {
        let numbers = self.numbers();
        let (column, (order, after)) = (self.sort.column(), self.direction.sql());
        let (keyset, tail) = if self.keyset {
            let (key, id) = (numbers.start, numbers.start + 1);
            (format!(" and ({column}, f.id) {after} (${key}::text::{}, ${id})", self.sort.sql_type()), String::new())
        } else {
            (String::new(), format!(" offset ${}", numbers.start))
        };
        let filters = self.filters() + &keyset;
        let page = |extra: &str| {
            format!(
                concat!(
                    "select {columns} from (select * from app.files f where f.organization_id = ",
                    tenant_org!(),
                    " and f.deleted_at is null{filters}{extra} order by {column} {order}, f.id {order} limit $1{tail}) f \
                     join app.users u on u.organization_id = f.organization_id and u.id = f.uploaded_by \
                     order by {column} {order}, f.id {order}"
                ),
                columns = super::file_columns!(),
                filters = filters,
                extra = extra,
                column = column,
                order = order,
                tail = tail,
            )
        };
        let Some((_, term)) = numbers.term else { return page("") };
        // A rare term: the files its suffix range names, checked, then sorted. A common term:
        // the sort order's index walked until the page is full. Which of the two runs is
        // decided in the statement (the probe), so both are one round trip, under one plan.
        let search = Search::new(term);
        format!(
            "{probe} select * from (({sparse}) union all ({dense})) found order by {sorted} {order}, id {order}",
            probe = search.probe,
            sparse = page(&format!(" and (select sparse from probe) and f.id in ({})", search.candidates)),
            dense = page(" and not (select sparse from probe)"),
            sorted = self.sort.output_column(),
        )
    }

    /// The total for the same filters. Without a search, O(1): the counters the database keeps
    /// per organization and status (V5), its status as `$1` (null for all). A search counts its
    /// matches up to `$1`, the cap: a common term in a large organization must not cost a count
    /// over all of its files.
    fn count_sql(self) -> String {
        let Some((_, term)) = self.numbers().term else {
            return COUNTERS.to_owned();
        };
        let (search, filters) = (Search::new(term), self.filters());
        format!(
            concat!(
                "{probe} select case when (select sparse from probe) then (select count(*) from app.files f \
                 where f.organization_id = ",
                tenant_org!(),
                " and f.deleted_at is null{filters} and f.id in ({candidates})) \
                 else (select count(*) from (select 1 from app.files f where f.organization_id = ",
                tenant_org!(),
                " and f.deleted_at is null{filters} limit $1) matches) end"
            ),
            probe = search.probe,
            filters = filters,
            candidates = search.candidates,
        )
    }
}

/// The organization's counter for a status (`$1`), or their sum.
const COUNTERS: &str = concat!(
    "select case $1::text when 'pending' then files_pending when 'ready' then files_ready \
     when 'failed' then files_failed else files_pending + files_ready + files_failed end \
     from app.organizations where id = ",
    tenant_org!()
);

/// One page of the listing, plus the total for the same filter, in one round trip.
#[tracing::instrument(name = "db.files.list_page", skip_all)]
pub async fn list_page(tx: impl TenantRead, listing: &Listing) -> Result<Page, DbError> {
    let shape = Shape::of(listing);
    let status = listing.status.map(FileStatus::as_str);
    // One row more than the page, to know whether a next page exists.
    let fetch = listing.limit + 1;
    let count_cap = SEARCH_COUNT_LIMIT + 1;
    let pattern = listing.search.as_deref().map(like_pattern);
    // In the order of `Shape::numbers`. The organization is the transaction's, never a
    // parameter: a read made with a session cookie learns it only in the same round trip.
    let mut params: Vec<&dyn Param> = vec![&fetch];
    params.extend(status.as_ref().map(|status| status as &dyn Param));
    if let (Some(pattern), Some(term)) = (&pattern, &listing.search) {
        params.extend([pattern as &dyn Param, term]);
    }
    let filter_params = params.len();
    match &listing.start {
        Start::Offset(offset) => params.push(offset),
        Start::After(position) => params.extend([&position.key as &dyn Param, &position.id]),
    }

    let (rows, total, total_capped) = if shape.search {
        // The filters' parameters, with the cap in the limit's place.
        let mut count_params = params[..filter_params].to_vec();
        count_params[0] = &count_cap;
        let (rows, counted) = tx.query_page(&shape.page_sql(), &params, &shape.count_sql(), &count_params).await?;
        (rows, counted.min(SEARCH_COUNT_LIMIT), counted > SEARCH_COUNT_LIMIT)
    } else {
        let (rows, total) = tx.query_page(&shape.page_sql(), &params, &shape.count_sql(), &[&status]).await?;
        (rows, total, false)
    };
    let mut files = rows.iter().map(FileRow::from_row).collect::<Result<Vec<_>, _>>()?;
    let more = files.len() as i64 > listing.limit;
    files.truncate(usize::try_from(listing.limit).unwrap_or(0));
    let next = more
        .then(|| files.last())
        .flatten()
        .map(|last| Position { key: listing.sort.value_of(last), id: *last.file.id.as_uuid() });
    Ok(Page { files, total, total_capped, next })
}

#[cfg(test)]
mod tests {
    use super::Shape;

    /// Every statement shape the listing can send, written out for review: a change to any of
    /// them shows as a diff of `sql/statements/list_page.sql` (`UPDATE_GOLDEN=1` rewrites it).
    #[test]
    fn every_listing_statement_is_in_the_golden_file() {
        let mut text = String::from(
            "-- Every statement the file listing can send (src/db/files/list.rs), one page and one total\n\
             -- per shape. Written by `UPDATE_GOLDEN=1 cargo test --lib golden`; reviewed as a diff.\n",
        );
        let shapes: Vec<Shape> = Shape::all().collect();
        assert_eq!(shapes.len(), 48);
        for shape in shapes {
            text.push_str(&format!(
                "\n-- {}: page\n{};\n-- {}: total\n{};\n",
                shape.name(),
                shape.page_sql(),
                shape.name(),
                shape.count_sql()
            ));
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/statements/list_page.sql");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == text,
            "a listing statement changed: run UPDATE_GOLDEN=1 cargo test --lib golden and review the diff"
        );
    }
}
