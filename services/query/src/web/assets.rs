//! The workbench's static files, embedded in the binary when it is built (no files to
//! deploy beside it): the stylesheet, the chart script, the vendored uPlot and the icon.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::AppState;

macro_rules! asset {
    ($file:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $file)).as_slice()
    };
}

/// Path, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/ui/assets/workbench.css",
        "text/css; charset=utf-8",
        asset!("workbench.css"),
    ),
    (
        "/ui/assets/workbench.js",
        "text/javascript; charset=utf-8",
        asset!("workbench.js"),
    ),
    (
        "/ui/assets/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        asset!("uplot/uPlot.iife.min.js"),
    ),
    (
        "/ui/assets/uPlot.min.css",
        "text/css; charset=utf-8",
        asset!("uplot/uPlot.min.css"),
    ),
    ("/favicon.ico", "image/x-icon", asset!("favicon.ico")),
];

pub(crate) fn routes() -> Router<AppState> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(
                path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, content_type),
                            // Revalidated after an hour: a new build may change them.
                            (header::CACHE_CONTROL, "public, max-age=3600"),
                            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                        ],
                        body,
                    )
                        .into_response()
                }),
            )
        })
}
