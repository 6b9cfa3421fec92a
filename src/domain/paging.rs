//! A page of a list by number: the one paging type of every numbered list, from the query
//! string (`http::paging`) to the statement's `limit`/`offset` (`db::*::list_page`).

use super::Invalid;

const MAX_PAGE_SIZE: u32 = 100;
const DEFAULT_PAGE_SIZE: u32 = 20;

/// Page from 1, limit 1–100 (default 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: u32,
    pub limit: u32,
}

impl Paging {
    pub fn parse(page: Option<u32>, limit: Option<u32>) -> Result<Self, Invalid> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == 0 {
            return Err(Invalid::new("invalid_query", "page starts at 1"));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(Invalid::new("invalid_query", format!("limit must be 1 to {MAX_PAGE_SIZE}")));
        }
        Ok(Self { page, limit })
    }

    /// Rows per page, as the statement's `limit`.
    pub fn limit(&self) -> i64 {
        i64::from(self.limit)
    }

    /// Rows before the page, as the statement's `offset`.
    pub fn offset(&self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_start_at_1_and_hold_1_to_100_rows() {
        assert_eq!(Paging::parse(None, None), Ok(Paging { page: 1, limit: 20 }));
        assert_eq!(Paging::parse(Some(3), Some(100)).map(|p| (p.limit(), p.offset())), Ok((100, 200)));
        for (page, limit) in [(Some(0), None), (None, Some(0)), (None, Some(101))] {
            assert_eq!(Paging::parse(page, limit).map_err(|e| e.code), Err("invalid_query"));
        }
    }
}
