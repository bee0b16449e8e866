//! The web dashboard, served with the API: pages `/pool`, `/servers`,
//! `/blocks` and `/u/{name}`, each a small HTML shell whose script (ours,
//! compiled in) reads the JSON API and refreshes itself every 30 s. Charts
//! use uPlot, installed from npm at a pinned version by `install/` and served
//! from `web_dir`; without it the pages still show every figure.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Stats;

const SCRIPT: &str = include_str!("../web/dashboard.js");
const STYLE: &str = include_str!("../web/dashboard.css");

/// The pages: path segment, title.
const PAGES: [(&str, &str); 3] = [
    ("pool", "Pool"),
    ("servers", "Servers"),
    ("blocks", "Blocks"),
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(id: &str, title: &str, user: &str) -> Response {
    let nav: String = PAGES
        .iter()
        .map(|(p, t)| {
            let current = if *p == id {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"/{p}\"{current}>{t}</a>")
        })
        .collect();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Sluice</title>\
         <link rel=\"stylesheet\" href=\"/assets/uplot.css\">\
         <link rel=\"stylesheet\" href=\"/assets/dashboard.css\"></head>\
         <body data-page=\"{id}\" data-user=\"{user}\">\
         <header><strong>Sluice</strong><nav>{nav}\
         <form id=\"find-user\"><input name=\"user\" placeholder=\"user\" aria-label=\"user\"></form></nav>\
         <span id=\"updated\"></span></header>\
         <main id=\"main\"><p>Loading…</p></main>\
         <script src=\"/assets/uplot.js\"></script>\
         <script src=\"/assets/dashboard.js\"></script></body></html>\n",
        title = escape(title),
        user = escape(user),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

pub(crate) async fn pool_page() -> Response {
    page("pool", "Pool", "")
}

pub(crate) async fn servers_page() -> Response {
    page("servers", "Servers", "")
}

pub(crate) async fn blocks_page() -> Response {
    page("blocks", "Blocks", "")
}

pub(crate) async fn user_page(Path(name): Path<String>) -> Response {
    page("user", &name, &name)
}

/// Our script and style, and the chart library from `web_dir`.
pub(crate) async fn asset(State(stats): State<Arc<Stats>>, Path(file): Path<String>) -> Response {
    let (body, kind): (Vec<u8>, &str) = match file.as_str() {
        "dashboard.js" => (SCRIPT.as_bytes().to_vec(), "text/javascript"),
        "dashboard.css" => (STYLE.as_bytes().to_vec(), "text/css"),
        "uplot.js" | "uplot.css" => {
            let name = if file == "uplot.js" {
                "uPlot.iife.min.js"
            } else {
                "uPlot.min.css"
            };
            let path = stats.config.web_dir.join(name);
            match tokio::fs::read(&path).await {
                Ok(bytes) => (
                    bytes,
                    if file == "uplot.js" {
                        "text/javascript"
                    } else {
                        "text/css"
                    },
                ),
                Err(error) => {
                    return (
                        StatusCode::NOT_FOUND,
                        format!(
                            "{}: {error} (install/deps.sh installs uPlot)",
                            path.display()
                        ),
                    )
                        .into_response();
                }
            }
        }
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}
