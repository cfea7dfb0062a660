//! A gRPC round trip over 127.0.0.1: the first message arrives at once, later ones on
//! change, and bad paths are refused.

use std::{sync::Arc, time::Duration};
use tokio_stream::StreamExt;
use tonic::Code;
use tulle_api::{
    context::ContextToken,
    destination::{GetDestination, destination_client::DestinationClient, update::Update as U},
};
use tulle_controller::{
    core::{Index, Naming, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo},
    grpc::{DestinationService, GrpcMetrics},
    runtime::incoming,
};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn get_streams_updates_over_grpc() {
    let ix = Arc::new(Index::new(Naming {
        cluster_domain: "cluster.local".into(),
        trust_domain: "cluster.local".into(),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DestinationService::new(ix.clone(), GrpcMetrics::default()).into_server())
            .serve_with_incoming(incoming(listener)),
    );
    let mut client =
        DestinationClient::new(tulle_api::tls::plaintext_channel(&addr.to_string()).unwrap());
    let get = |path: &str| GetDestination {
        scheme: "k8s".into(),
        path: path.into(),
        context_token: ContextToken {
            ns: "shop".into(),
            pod: None,
        }
        .encode(),
    };

    // Unknown name.
    let mut s = tokio::time::timeout(LIMIT, client.get(get("nope.shop.svc.cluster.local:80")))
        .await
        .unwrap()
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(LIMIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first.update, Some(U::NoEndpoints(n)) if !n.exists));

    // A known service: first message at once, then a change.
    ix.apply_service(
        "shop",
        "web",
        ServiceInfo {
            cluster_ips: vec!["10.96.0.10".parse().unwrap()],
            ports: vec![ServicePort {
                name: String::new(),
                port: 80,
                opaque: false,
            }],
        },
    );
    let mut s = client
        .get(get("web.shop.svc.cluster.local:80"))
        .await
        .unwrap()
        .into_inner();
    let first = tokio::time::timeout(LIMIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first.update, Some(U::NoEndpoints(n)) if n.exists));
    ix.apply_pod(
        "shop",
        "web-1",
        PodInfo {
            ips: vec!["10.1.0.1".parse().unwrap()],
            service_account: "web".into(),
            meshed: true,
            owner: None,
        },
    );
    ix.apply_slice(
        "shop",
        "web-a",
        SliceInfo {
            service: "web".into(),
            ports: vec![(String::new(), 8080)],
            endpoints: vec![SliceEndpoint {
                addrs: vec!["10.1.0.1".parse().unwrap()],
                ready: true,
                pod: Some("web-1".into()),
            }],
        },
    );
    let add = tokio::time::timeout(LIMIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(U::Add(set)) = add.update else {
        panic!("expected Add, got {add:?}")
    };
    assert_eq!(set.addrs.len(), 1);
    let a = &set.addrs[0];
    let sa: std::net::SocketAddr = a.addr.as_ref().unwrap().try_into().unwrap();
    assert_eq!(sa, "10.1.0.1:8080".parse().unwrap());
    assert_eq!(
        a.tls_identity.as_ref().unwrap().name,
        "web.shop.serviceaccount.identity.tulle.cluster.local"
    );

    ix.delete_slice("shop", "web-a");
    let gone = tokio::time::timeout(LIMIT, s.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(gone.update, Some(U::NoEndpoints(n)) if n.exists),
        "{gone:?}"
    );

    // A bad path.
    let err = client.get(get("example.com:443")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// Issue 15, item 7: one client may hold only so many streams; the refusal says why.
#[tokio::test]
async fn streams_per_client_are_capped_with_a_clear_error() {
    let ix = Arc::new(Index::new(Naming {
        cluster_domain: "cluster.local".into(),
        trust_domain: "cluster.local".into(),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = DestinationService::new(ix.clone(), GrpcMetrics::default()).with_limits(
        tulle_controller::grpc::DestinationLimits {
            max_streams_per_client: 3,
        },
    );
    tokio::spawn(
        tulle_controller::grpc::server_builder()
            .add_service(svc.into_server())
            .serve_with_incoming(incoming(listener)),
    );
    let client =
        || DestinationClient::new(tulle_api::tls::plaintext_channel(&addr.to_string()).unwrap());
    let get = |i: usize| GetDestination {
        scheme: "k8s".into(),
        path: format!("svc-{i}.shop.svc.cluster.local:80"),
        context_token: String::new(),
    };
    let mut c = client();
    let mut open = vec![];
    for i in 0..2 {
        open.push(
            tokio::time::timeout(LIMIT, c.get(get(i)))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let profile = tokio::time::timeout(LIMIT, c.get_profile(get(9)))
        .await
        .unwrap()
        .unwrap();
    // A fourth stream, even over another connection, is refused.
    let err = tokio::time::timeout(LIMIT, client().get(get(3)))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("127.0.0.1")
            && err.message().contains("holds 3 destination streams"),
        "{}",
        err.message()
    );
    // Once a stream is closed, its place is free again.
    drop(profile);
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        match c.get(get(4)).await {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the place never came back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
