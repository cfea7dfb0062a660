//! The static assets, compiled into the binary: the stylesheet, the live-update script and
//! the icon. Their URLs carry a hash of their content, so they are cached for a year
//! (`immutable`) and a new build is fetched at once.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::views::fnv;

/// One asset.
#[derive(Clone, Debug)]
pub struct Asset {
    /// Its URL (`/assets/dashboard.<hash>.css`).
    pub url: String,
    /// Content type.
    pub content_type: &'static str,
    /// Content.
    pub body: &'static str,
}

/// Every asset.
#[derive(Clone, Debug)]
pub struct Assets {
    /// The stylesheet.
    pub css: Asset,
    /// The script.
    pub js: Asset,
    /// The icon.
    pub icon: Asset,
}

fn asset(stem: &str, ext: &str, content_type: &'static str, body: &'static str) -> Asset {
    Asset {
        url: format!("/assets/{stem}.{:012x}.{ext}", fnv(body.as_bytes()) >> 16),
        content_type,
        body,
    }
}

impl Default for Assets {
    fn default() -> Self {
        Self {
            css: asset(
                "dashboard",
                "css",
                "text/css; charset=utf-8",
                include_str!("../../assets/dashboard.css"),
            ),
            js: asset(
                "dashboard",
                "js",
                "text/javascript; charset=utf-8",
                include_str!("../../assets/dashboard.js"),
            ),
            icon: asset(
                "icon",
                "svg",
                "image/svg+xml",
                include_str!("../../assets/icon.svg"),
            ),
        }
    }
}

impl Assets {
    fn find(&self, url: &str) -> Option<&Asset> {
        [&self.css, &self.js, &self.icon]
            .into_iter()
            .find(|a| a.url == url)
    }
}

/// `GET /assets/{file}`.
pub async fn serve(State(assets): State<Arc<Assets>>, Path(file): Path<String>) -> Response {
    match assets.find(&format!("/assets/{file}")) {
        Some(a) => (
            [
                (header::CONTENT_TYPE, a.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            a.body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no such asset (an old page? reload it)\n",
        )
            .into_response(),
    }
}

/// `GET /favicon.ico`: the icon, for browsers that ask before reading the page.
pub async fn favicon(State(assets): State<Arc<Assets>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, assets.icon.content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        assets.icon.body,
    )
        .into_response()
}
