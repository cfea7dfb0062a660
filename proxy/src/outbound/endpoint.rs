//! The endpoint stage of the outbound path: the typed targets that build each balanced
//! endpoint's state from a discovered [`DiscoveredEndpoint`] ([`HttpEndpoints`] for a backend
//! service's HTTP stack, [`TcpEndpoints`] for opaque connections), and that state itself.

use std::sync::Arc;

use http::Request;
use tower::ServiceBuilder;

use crate::balance::{Balanced, NewEndpoint, PeakEwma, Serve};
use crate::body::RequestBody;
use crate::client::{EndpointClient, H2Client, MeshTls, PlainH1};
use crate::discovery::DiscoveredEndpoint;
use crate::metrics::{Direction, HttpMetrics, Labels, TlsStatus, labels};
use crate::runtime::Runtime;
use crate::svc::{
    ErrorResponse, ErrorResponseLayer, OrigProto, OrigProtoLayer, RecordHttp, RecordHttpLayer,
    ResponseTimeout, ResponseTimeoutLayer,
};
use crate::tcp::TcpTarget;
use crate::tls::{ALPN_H1, ALPN_H2, ALPN_TCP, server_name};

const NO_TLS_PLAIN: &str = "not_provided_by_service_discovery";

/// The peak-EWMA seed: a new endpoint is assumed this fast until measured.
const DEFAULT_RTT: std::time::Duration = std::time::Duration::from_millis(30);
/// The peak-EWMA decay time constant.
const EWMA_DECAY: std::time::Duration = std::time::Duration::from_secs(10);

/// The request stack of one endpoint.
pub type EndpointStack =
    RecordHttp<ErrorResponse<ResponseTimeout<OrigProto<EndpointClient>>>, Arc<HttpMetrics>>;

/// Per-endpoint state of an HTTP backend: load and request stack.
#[derive(Debug)]
pub struct OutEndpoint {
    ewma: Arc<PeakEwma>,
    http: EndpointStack,
}

impl Balanced for OutEndpoint {
    fn load(&self) -> &Arc<PeakEwma> {
        &self.ewma
    }
}

impl Serve<Request<RequestBody>> for OutEndpoint {
    type Service = EndpointStack;
    fn service(&self) -> EndpointStack {
        self.http.clone()
    }
}

/// Per-endpoint state for opaque connections: load and where they go.
#[derive(Debug)]
pub struct TcpEndpoint {
    pub(super) ewma: Arc<PeakEwma>,
    pub(super) target: TcpTarget,
}

impl Balanced for TcpEndpoint {
    fn load(&self) -> &Arc<PeakEwma> {
        &self.ewma
    }
}

fn new_ewma() -> Arc<PeakEwma> {
    Arc::new(PeakEwma::new(DEFAULT_RTT, EWMA_DECAY))
}

/// Mesh TLS with `alpn` to a meshed endpoint (`None`: not meshed).
fn mesh_tls(rt: &Runtime, ep: &DiscoveredEndpoint, alpn: &'static [u8]) -> Option<MeshTls> {
    let id = ep.identity.as_ref()?;
    Some(MeshTls {
        config: rt.tls.client(alpn),
        name: server_name(id)?,
        identity: id.clone(),
    })
}

/// The metric labels of an endpoint: route authority, address, TLS, `dst_*` metadata
/// (with `dst_service`, the concrete backend service, when known).
fn endpoint_labels(
    authority: Option<&str>,
    service: Option<&str>,
    ep: &DiscoveredEndpoint,
) -> Labels {
    let status = match &ep.identity {
        Some(id) => TlsStatus::Mesh(id.clone()),
        None => TlsStatus::NoIdentity(NO_TLS_PLAIN),
    };
    let with_service;
    let dst = match service {
        Some(svc) if !ep.labels.contains_key("service") => {
            let mut l = ep.labels.clone();
            l.insert("service".to_string(), svc.to_string());
            with_service = l;
            &with_service
        }
        _ => &ep.labels,
    };
    labels(
        Direction::Outbound,
        authority,
        &ep.addr.to_string(),
        &status,
        Some(dst),
    )
}

/// The endpoints of one backend service, for HTTP: metrics labelled with the route's
/// `authority` and the backend's `service`.
pub struct HttpEndpoints {
    pub rt: Arc<Runtime>,
    pub h1: PlainH1,
    pub authority: Option<String>,
    pub service: Option<String>,
}

impl NewEndpoint<OutEndpoint> for HttpEndpoints {
    fn new_endpoint(&self, ep: &DiscoveredEndpoint) -> Arc<OutEndpoint> {
        let (rt, cfg) = (&self.rt, &self.rt.config);
        let tls = mesh_tls(rt, ep, ALPN_H2);
        let l = endpoint_labels(self.authority.as_deref(), self.service.as_deref(), ep);
        let tcp = rt.metrics.tcp(l.clone(), "dst");
        let h2 = H2Client::new(ep.addr, tls.clone(), cfg.connect_timeout, Some(tcp));
        let upgrade_tls = mesh_tls(rt, ep, ALPN_H1);
        let client = EndpointClient::new(
            ep.addr,
            h2,
            upgrade_tls,
            self.h1.clone(),
            cfg.connect_timeout,
        );
        let http = ServiceBuilder::new()
            .layer(RecordHttpLayer::new(Arc::new(rt.metrics.http(l))))
            .layer(ErrorResponseLayer)
            .layer(ResponseTimeoutLayer {
                timeout: cfg.response_timeout,
            })
            .layer(OrigProtoLayer::new(ep.addr.port(), tls.is_some()))
            .service(client);
        Arc::new(OutEndpoint {
            ewma: new_ewma(),
            http,
        })
    }
}

/// The endpoints of a destination, for opaque connections.
pub struct TcpEndpoints {
    pub rt: Arc<Runtime>,
}

impl NewEndpoint<TcpEndpoint> for TcpEndpoints {
    fn new_endpoint(&self, ep: &DiscoveredEndpoint) -> Arc<TcpEndpoint> {
        let l = endpoint_labels(None, None, ep);
        Arc::new(TcpEndpoint {
            ewma: new_ewma(),
            target: TcpTarget {
                addr: ep.addr,
                mesh: mesh_tls(&self.rt, ep, ALPN_TCP),
                metrics: Some(self.rt.metrics.tcp(l, "dst")),
            },
        })
    }
}
