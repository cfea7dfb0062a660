//! The HTTP side (axum): GET routes only — the pages, their live-update streams
//! ([`live`]), the static [`assets`] and a readiness probe — behind the Host allow-list and
//! the security headers ([`security`]).

pub mod assets;
pub mod live;
pub mod security;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use regex::Regex;

use crate::Error;
use crate::history::History;
use crate::source::Cluster;
use crate::views::{self, Ctx, Document, ErrorBox, Page, Rendered};
use assets::Assets;

/// What the handlers share.
#[derive(Clone)]
pub struct App {
    /// The data.
    pub cluster: Arc<dyn Cluster>,
    /// Samples for the charts.
    pub history: Arc<History>,
    /// Static assets.
    pub assets: Arc<Assets>,
    /// The Host allow-list.
    pub hosts: Arc<Regex>,
    /// The live-update period.
    pub refresh: Duration,
    /// Live-update streams open now.
    pub live_streams: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("hosts", &self.hosts.as_str())
            .field("refresh", &self.refresh)
            .finish_non_exhaustive()
    }
}

impl FromRef<App> for Arc<Assets> {
    fn from_ref(app: &App) -> Self {
        app.assets.clone()
    }
}

impl App {
    /// An app over `cluster`; `enforced_host` is the Host allow-list regex.
    pub fn new(
        cluster: Arc<dyn Cluster>,
        enforced_host: &str,
        refresh: Duration,
    ) -> Result<Self, Error> {
        let hosts = Regex::new(enforced_host).map_err(|e| {
            Error::Config(format!(
                "--enforced-host {enforced_host:?} is not a regular expression: {e}"
            ))
        })?;
        Ok(Self {
            cluster,
            history: Arc::new(History::default()),
            assets: Arc::new(Assets::default()),
            hosts: Arc::new(hosts),
            refresh: refresh.max(Duration::from_secs(2)),
            live_streams: Arc::default(),
        })
    }

    /// The rendering context at this moment.
    pub fn ctx(&self) -> Ctx<'_> {
        Ctx {
            cluster: self.cluster.as_ref(),
            history: &self.history,
            now: now(),
        }
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `12:00:03 UTC`.
pub fn clock() -> String {
    crate::format::date(now())
        .get(11..16)
        .map(|hm| format!("{hm}:{:02} UTC", now() % 60))
        .unwrap_or_default()
}

fn window_text(d: Duration) -> String {
    match d.as_secs() {
        s if s % 60 == 0 && s >= 60 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The full document of a page.
pub fn document(app: &App, page: &Page, rendered: &Rendered) -> Result<String, Error> {
    let section = page.section();
    Ok(Document {
        page: rendered,
        section,
        css: &app.assets.css.url,
        js: &app.assets.js.url,
        icon: &app.assets.icon.url,
        live: views::live_url(page),
        rendered_at: clock(),
        window: window_text(app.cluster.window()),
    }
    .render()?)
}

fn error_page(app: &App, status: StatusCode, title: &str, message: String) -> Response {
    let rendered = Rendered {
        title: title.to_string(),
        crumbs: vec![("Overview".into(), "/".into())],
        fragments: vec![views::Fragment {
            id: "error",
            html: ErrorBox {
                what: "this page",
                message,
            }
            .render()
            .unwrap_or_default(),
        }],
    };
    let body = document(app, &Page::Overview, &rendered).unwrap_or_else(|e| e.to_string());
    (status, [(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

/// Any page.
async fn page(State(app): State<App>, uri: Uri) -> Response {
    let page = match Page::parse(uri.path(), uri.query()) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return error_page(
                &app,
                StatusCode::NOT_FOUND,
                "Not found",
                format!("there is no page {}", uri.path()),
            );
        }
        Err(e) => return error_page(&app, StatusCode::BAD_REQUEST, "Bad request", e.to_string()),
    };
    match views::render(&page, app.ctx()).await {
        Ok(r) => match document(&app, &page, &r) {
            Ok(body) => ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response(),
            Err(e) => error_page(
                &app,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error",
                e.to_string(),
            ),
        },
        Err(e) if e.is_not_found() => {
            error_page(&app, StatusCode::NOT_FOUND, "Not found", e.to_string())
        }
        Err(e) => error_page(
            &app,
            StatusCode::BAD_GATEWAY,
            "Cannot read the cluster",
            e.to_string(),
        ),
    }
}

async fn ready() -> &'static str {
    "ok\n"
}

/// The router: GET (and HEAD) only.
pub fn router(app: App) -> Router {
    let hosts = app.hosts.clone();
    Router::new()
        .route("/", get(page))
        .route("/topology", get(page))
        .route("/smi", get(page))
        .route("/namespaces/{ns}", get(page))
        .route("/namespaces/{ns}/{kind}/{name}", get(page))
        .route("/live", get(live::stream))
        .route("/assets/{file}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
        .route("/ready", get(ready))
        .fallback(get(page))
        .with_state(app)
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            security::enforce_host,
        ))
        .layer(axum::middleware::from_fn(security::headers))
}

/// Serves `app` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, app: App) -> Result<(), Error> {
    axum::serve(listener, router(app))
        .await
        .map_err(|source| Error::Io {
            what: "serving HTTP".into(),
            source,
        })
}
