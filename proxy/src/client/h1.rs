//! A pool of HTTP/1.1 connections to an application port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Either;
use hyper_util::rt::TokioIo;

use crate::body::{Body, RequestBody, proxied};
use crate::conn::connect;
use crate::error::ProxyError;

/// A pool of HTTP/1.1 connections to one application port (inbound side). A connection goes
/// back to the pool when its response body is done (or dropped).
#[derive(Debug)]
pub struct H1Pool {
    addr: SocketAddr,
    connect_timeout: Duration,
    idle: Mutex<Vec<hyper::client::conn::http1::SendRequest<RequestBody>>>,
}

const MAX_IDLE_H1: usize = 256;

impl H1Pool {
    pub fn new(addr: SocketAddr, connect_timeout: Duration) -> Arc<Self> {
        Arc::new(H1Pool {
            addr,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn put(&self, send: hyper::client::conn::http1::SendRequest<RequestBody>) {
        if send.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_H1 {
            idle.push(send);
        }
    }

    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<RequestBody>, ProxyError> {
        let tcp = connect(self.addr, self.connect_timeout).await?;
        let (send, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| ProxyError::Handshake(self.addr, e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    async fn checkout(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<RequestBody>, ProxyError> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(mut s) if !s.is_closed() => {
                    if s.ready().await.is_ok() {
                        return Ok(s);
                    }
                }
                Some(_) => {}
                None => {
                    let mut s = self.connect().await?;
                    s.ready()
                        .await
                        .map_err(|e| ProxyError::Upstream(self.addr, e))?;
                    return Ok(s);
                }
            }
        }
    }

    /// Sends a request (origin-form URI, Host header set by the caller).
    pub async fn send(
        self: &Arc<Self>,
        req: Request<RequestBody>,
    ) -> Result<Response<Body>, ProxyError> {
        let mut s = self.checkout().await?;
        let resp = s
            .send_request(req)
            .await
            .map_err(|e| ProxyError::Upstream(self.addr, e))?;
        let mut resp = proxied(resp);
        if let Either::Left(body) = resp.body_mut() {
            let pool = self.clone();
            body.on_done(move || pool.put(s));
        }
        Ok(resp)
    }
}
