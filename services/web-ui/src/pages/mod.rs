//! One module per page or group of pages.

pub mod dashboard;
pub mod login;
pub mod sites;
pub mod tasks;

/// Rows a list page shows at a time.
pub const PER_PAGE: i64 = 50;

/// `?page=N` (1-based) as an API offset; anything unreadable is the first page.
pub fn offset(page: Option<&str>) -> (i64, i64) {
    let page = page.and_then(|p| p.parse::<i64>().ok()).filter(|p| *p >= 1).unwrap_or(1);
    (page, (page - 1) * PER_PAGE)
}

/// The number of pages `total` rows fill.
pub fn pages(total: i64) -> i64 {
    ((total + PER_PAGE - 1) / PER_PAGE).max(1)
}
