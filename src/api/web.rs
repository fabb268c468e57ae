//! The browser consoles: serves the assets embedded by `build.rs` (`web/dist/**`).
//!
//! Paths under `/api` are never answered with the single-page app: an unknown API path
//! gets a JSON 404, so a client bug is not hidden behind an HTML page.

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Hashed build outputs (Vite puts them under `/assets/`) never change under one name.
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else (index.html, icons) is revalidated so a new build is seen at once.
const CACHE_REVALIDATE: &str = "no-cache";
/// The consoles load only their own scripts and talk only to this server; no framing
/// (click-jacking of the command buttons). Inline styles: uPlot and Preact set them.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; media-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Router serving the consoles for every path the API does not claim. Merge it into the
/// API router (`.merge(web::router())`); it only installs a fallback.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().fallback(serve)
}

/// An embedded asset by its URL path (`/index.html`, `/assets/index-abc123.js`).
#[must_use]
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    WEB_ASSETS
        .iter()
        .find(|(url, _, _)| *url == path)
        .map(|(_, content_type, bytes)| (*content_type, *bytes))
}

async fn serve(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"code":"not_found","message":"no such API endpoint"}"#,
        )
            .into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let (url, found) = match asset(path) {
        Some(found) if path != "/" => (path, Some(found)),
        // A missing hashed file is a stale page asking for an old build: say so.
        None if path.starts_with("/assets/") => return StatusCode::NOT_FOUND.into_response(),
        // Client-side routes (/dispatch, /unit, …) and `/` get the app shell.
        _ => ("/index.html", asset("/index.html")),
    };
    let Some((content_type, bytes)) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let cache = if url.starts_with("/assets/") {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    };
    let mut response = if method == Method::HEAD {
        StatusCode::OK.into_response()
    } else {
        bytes.into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(uri: &str) -> (StatusCode, String, String, String) {
        let resp = router::<()>()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let header_text = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let content_type = header_text(header::CONTENT_TYPE);
        let cache = header_text(header::CACHE_CONTROL);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            cache,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn root_serves_the_app_shell_as_html() {
        let (status, content_type, cache, body) = get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/html; charset=utf-8");
        assert_eq!(cache, CACHE_REVALIDATE);
        assert!(body.contains("<html"), "{body}");
    }

    #[tokio::test]
    async fn the_app_shell_forbids_framing_and_foreign_scripts() {
        let resp = router::<()>()
            .oneshot(Request::get("/unit").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let csp = resp
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
    }

    #[tokio::test]
    async fn missing_hashed_assets_are_404_not_the_app() {
        let (status, _, _, _) = get("/assets/index-stale.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn client_side_routes_fall_back_to_index_html() {
        let (_, _, _, root) = get("/").await;
        let (status, content_type, _, body) = get("/dispatch").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "text/html; charset=utf-8");
        assert_eq!(body, root);
    }

    #[tokio::test]
    async fn unknown_api_paths_are_json_404_not_the_app() {
        let (status, content_type, _, body) = get("/api/no-such-thing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(content_type, "application/json");
        assert!(body.contains("not_found"), "{body}");
    }

    #[tokio::test]
    async fn every_embedded_asset_is_served_with_its_type() {
        for (url, content_type, bytes) in WEB_ASSETS {
            let (status, served_type, cache, body) = get(url).await;
            assert_eq!(status, StatusCode::OK, "{url}");
            assert_eq!(served_type, *content_type, "{url}");
            assert_eq!(body.len(), bytes.len(), "{url}");
            let expected = if url.starts_with("/assets/") {
                CACHE_IMMUTABLE
            } else {
                CACHE_REVALIDATE
            };
            assert_eq!(cache, expected, "{url}");
        }
    }
}
