//! A plain HTTP/1 GET with a bounded timeout, used by `/call` and the `get` command.

use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// What a GET got back.
#[derive(Debug, serde::Serialize)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// GET `url` (http only); fails on a bad URL, a connection error or after 10 s.
pub async fn get(url: &str) -> anyhow::Result<Reply> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("bad url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("only http:// URLs are supported, got {url:?}");
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let fut = async {
        let resp = client.get(uri).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok(Reply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| anyhow::anyhow!("GET {url} timed out after 10s"))?
}
