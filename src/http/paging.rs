//! `?page=&limit=` of every list endpoint that pages by number.

use crate::{domain::Paging, error::ApiError};

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

impl PageQuery {
    pub fn paging(self) -> Result<Paging, ApiError> {
        Ok(Paging::parse(self.page, self.limit)?)
    }
}
