//! The dashboard: static files (`gateway/ui/`, plain ES modules, no build step) embedded in
//! the binary and served at `/ui` without a key — the page asks for one and sends it to the
//! JSON API itself.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::api_error::{ApiError, Envelope};

/// No inline script or style, nothing from elsewhere; images also from the `blob:` URLs the
/// page makes of job files it fetched with its key.
const POLICY: &str = "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; \
                      form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", bytes: include_bytes!("../ui/index.html") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../ui/app.js") },
    Asset { name: "api.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../ui/api.js") },
    Asset { name: "views.js", content_type: "text/javascript; charset=utf-8", bytes: include_bytes!("../ui/views.js") },
    Asset { name: "style.css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("../ui/style.css") },
    Asset { name: "icon.svg", content_type: "image/svg+xml", bytes: include_bytes!("../ui/icon.svg") },
];

/// Each asset's entity tag: a digest of its bytes, so a new build is fetched again at once.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| {
            let digest: String = Sha256::digest(asset.bytes).iter().take(12).map(|b| format!("{b:02x}")).collect();
            HeaderValue::try_from(format!("\"{digest}\"")).expect("hex is a valid header value")
        })
        .collect()
});

/// `GET /ui` and `GET /ui/`: the page.
#[utoipa::path(
    get,
    path = "/ui",
    operation_id = "dashboard",
    tag = "dashboard",
    params(
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` answered before: 304 if the file is \
                                                                  unchanged."),
    ),
    responses(
        (status = 200, description = "The dashboard's page.", body = String, content_type = "text/html; charset=utf-8",
            headers(("ETag" = String), ("Content-Security-Policy" = String))),
        (status = 304, description = "Not modified.", headers(("ETag" = String))),
    )
)]
pub(crate) async fn index(headers: HeaderMap) -> Response {
    answer("index.html", &headers)
}

/// `GET /ui/{file}`: the page's scripts and style sheet.
#[utoipa::path(
    get,
    path = "/ui/{file}",
    operation_id = "dashboardFile",
    tag = "dashboard",
    params(
        ("file" = String, Path, description = "The file's name.", example = "app.js"),
        ("If-None-Match" = Option<String>, Header, description = "The `ETag` answered before: 304 if the file is \
                                                                  unchanged.")),
    responses(
        (status = 200, description = "One of the page's files: `index.html`, `app.js`, `api.js`, `views.js`, \
                                      `style.css`, `icon.svg`.",
            content(
                (String = "text/html; charset=utf-8"),
                (String = "text/javascript; charset=utf-8"),
                (String = "text/css; charset=utf-8"),
                (String = "image/svg+xml")
            ),
            headers(("ETag" = String), ("Content-Security-Policy" = String))),
        (status = 304, description = "Not modified.", headers(("ETag" = String))),
        (status = 404, description = "`not_found`: no such file.", body = Envelope),
    )
)]
pub(crate) async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    answer(&file, &headers)
}

fn answer(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|asset| asset.name == name) else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no file {name:?} in the dashboard"))
            .into_response();
    };
    let (asset, etag) = (&ASSETS[index], &ETAGS[index]);
    let fresh = headers.get(IF_NONE_MATCH).is_some_and(|tag| tag == etag);
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, etag.clone());
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_embedded_files() {
        let page = std::str::from_utf8(ASSETS[0].bytes).unwrap();
        for reference in page.split("\"/ui/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(ASSETS.iter().any(|asset| asset.name == name), "index.html names /ui/{name}");
        }
        assert!(!page.contains("<script>") && !page.contains("style="), "no inline script or style");
    }

    #[test]
    fn an_unchanged_file_is_answered_304_with_the_policy() {
        let first = answer("app.js", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, first.headers()[ETAG].clone());
        let second = answer("app.js", &again);
        assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
        assert!(second.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'self'"));
        assert_eq!(answer("../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }
}
