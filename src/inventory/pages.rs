//! How discovery walks the management APIs: every listing to its last page, and per-API calls
//! a few at a time (the budget, not this, sets how many go out per second).

use std::collections::HashSet;

use futures::StreamExt;

use super::DiscoveryError;

/// Per-API reads in flight per target. The account's budget paces them, not this: enough
/// are in flight to keep the budget busy while REST APIs wait for GetResources' own pace.
const CONCURRENCY: usize = 16;

/// Pages of one listing at most: 5 million items at 500 to a page, far past any account.
const MAX_PAGES: usize = 10_000;

/// The page tokens of one listing so far: refuses a token seen before (the listing would
/// never end) and a listing longer than [`MAX_PAGES`]. Shared by discovery and the
/// access-log reads, which count each page as it comes instead of collecting the listing.
#[derive(Debug, Default)]
pub struct PageTokens {
    seen: HashSet<String>,
    pages: usize,
}

impl PageTokens {
    /// After a page that returned `next`: the token of the page to read next, `None` after
    /// the last page (no token, or an empty one), or why the listing cannot go on.
    pub fn next(&mut self, next: Option<&str>) -> Result<Option<String>, String> {
        self.pages += 1;
        let Some(next) = next.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if !self.seen.insert(next.to_string()) {
            return Err(format!(
                "page {} returned a page token seen before; the listing would never end",
                self.pages
            ));
        }
        if self.pages >= MAX_PAGES {
            return Err(format!("more than {MAX_PAGES} pages"));
        }
        Ok(Some(next.to_string()))
    }
}

/// Every item of one listing. `page(token)` makes one call and returns its items and the next
/// token (none, or empty, on the last page).
///
/// Written here rather than with the SDK's paginators: apigatewayv2 has none, and those of
/// apigateway end quietly when a token repeats, handing over a truncated listing as complete.
/// A complete listing is what removes series, so a token seen before, or a listing longer
/// than [`MAX_PAGES`], is an error, and the last good inventory stays.
pub(super) async fn all_pages<T, F, Fut>(
    service: &'static str,
    operation: &'static str,
    mut page: F,
) -> Result<Vec<T>, DiscoveryError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), DiscoveryError>>,
{
    let mut items = Vec::new();
    let mut tokens = PageTokens::default();
    let mut token = None;
    loop {
        let (mut found, next) = page(token.take()).await?;
        items.append(&mut found);
        token = tokens
            .next(next.as_deref())
            .map_err(|message| DiscoveryError {
                service,
                operation,
                message,
            })?;
        if token.is_none() {
            return Ok(items);
        }
    }
}

/// Runs `call` on every item with at most [`CONCURRENCY`] in flight. Each item's failure is
/// its own ([`super::known::Known::failed`]): none holds the others back.
pub(super) async fn each_bounded<I, F, Fut>(items: Vec<I>, call: F)
where
    F: FnMut(I) -> Fut,
    Fut: Future<Output = ()>,
{
    futures::stream::iter(items)
        .map(call)
        .buffer_unordered(CONCURRENCY)
        .collect::<()>()
        .await;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A listing served from `pages`: token → (items, next token); the first page has no token.
    async fn walk(pages: &[(Option<&str>, &[u32], Option<&str>)]) -> Result<Vec<u32>, String> {
        let pages: HashMap<Option<String>, (Vec<u32>, Option<String>)> = pages
            .iter()
            .map(|(at, items, next)| {
                (
                    at.map(str::to_string),
                    (items.to_vec(), next.map(str::to_string)),
                )
            })
            .collect();
        let mut calls = 0;
        let result = all_pages("svc", "List", |token| {
            calls += 1;
            let page = pages.get(&token).cloned();
            async move {
                page.ok_or(DiscoveryError {
                    service: "svc",
                    operation: "List",
                    message: "unknown token".into(),
                })
            }
        })
        .await;
        assert!(
            calls <= pages.len() + 1,
            "{calls} calls for {} pages",
            pages.len()
        );
        result.map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn every_page_is_read_until_the_token_ends() {
        let items = walk(&[
            (None, &[1, 2], Some("a")),
            (Some("a"), &[3], Some("b")),
            (Some("b"), &[4], Some("")),
        ])
        .await;
        assert_eq!(items, Ok(vec![1, 2, 3, 4]));
        assert_eq!(walk(&[(None, &[7], None)]).await, Ok(vec![7]));
    }

    #[tokio::test]
    async fn a_repeated_token_is_an_error_not_a_short_listing() {
        // The same token twice in a row (what the SDK's paginators stop on quietly) ...
        let err = walk(&[(None, &[1], Some("a")), (Some("a"), &[2], Some("a"))])
            .await
            .unwrap_err();
        assert!(
            err.contains("svc List") && err.contains("seen before"),
            "{err}"
        );
        // ... and a longer cycle, which they would follow for ever.
        let err = walk(&[
            (None, &[1], Some("a")),
            (Some("a"), &[2], Some("b")),
            (Some("b"), &[3], Some("a")),
        ])
        .await
        .unwrap_err();
        assert!(err.contains("page 3"), "{err}");
    }

    #[tokio::test]
    async fn an_endless_listing_stops_at_the_page_limit() {
        let mut n = 0u64;
        let err = all_pages("svc", "List", |_| {
            n += 1;
            let next = format!("t{n}");
            async move { Ok((vec![0u8], Some(next))) }
        })
        .await
        .unwrap_err();
        assert_eq!(n, MAX_PAGES as u64);
        assert!(err.to_string().contains("more than 10000 pages"), "{err}");
    }
}
