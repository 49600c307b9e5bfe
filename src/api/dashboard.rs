//! The web dashboard, embedded in the binary: plain HTML, CSS and JavaScript in
//! `dashboards/web/` (the script as ES modules, `main.js` importing the rest), no build step
//! and no CDN, so it works offline and `cargo build` needs nothing but Rust. It reads the same API as everyone else (`/graph`, `/findings`,
//! `/nodes/{id}`, `/series/...`, `/operations`, `/events`).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../../dashboards/web/index.html");
/// The script, as ES modules by role (loaded by `main.js`, no bundler).
const MODULES: [(&str, &str); 6] = [
    ("main.js", include_str!("../../dashboards/web/main.js")),
    ("api.js", include_str!("../../dashboards/web/api.js")),
    ("format.js", include_str!("../../dashboards/web/format.js")),
    ("map.js", include_str!("../../dashboards/web/map.js")),
    ("panels.js", include_str!("../../dashboards/web/panels.js")),
    ("chart.js", include_str!("../../dashboards/web/chart.js")),
];
const STYLE_CSS: &str = include_str!("../../dashboards/web/style.css");

pub async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let module = MODULES.iter().find(|(name, _)| *name == file);
    let (ty, body) = match (file.as_str(), module) {
        (_, Some((_, js))) => ("text/javascript; charset=utf-8", *js),
        ("style.css", None) => ("text/css; charset=utf-8", STYLE_CSS),
        _ => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
