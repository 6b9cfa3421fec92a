//! `?page=&limit=` paging, shared by every list endpoint that pages by number.

use crate::error::ApiError;

const MAX_PAGE_SIZE: u32 = 100;
const DEFAULT_PAGE_SIZE: u32 = 20;

/// `?page=&limit=` of every list endpoint: page from 1, limit 1–100 (default 20). Any other
/// parameter is refused (400), never silently ignored.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    page: Option<u32>,
    /// Page size, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub page: u32,
    pub limit: u32,
}

impl PageQuery {
    pub fn paging(self) -> Result<Paging, ApiError> {
        Paging::parse(self.page, self.limit)
    }
}

impl Paging {
    pub fn parse(page: Option<u32>, limit: Option<u32>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if page == 0 {
            return Err(ApiError::invalid("invalid_query", "page starts at 1"));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(ApiError::invalid("invalid_query", format!("limit must be 1 to {MAX_PAGE_SIZE}")));
        }
        Ok(Self { page, limit })
    }

    pub fn limit(&self) -> i64 {
        i64::from(self.limit)
    }

    pub fn offset(&self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.limit)
    }
}
