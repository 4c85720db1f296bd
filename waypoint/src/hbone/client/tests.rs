use super::*;
use crate::demo::ca::{DemoCa, TRUST_DOMAIN};
use crate::demo::hbone_endpoint;
use crate::demo::waypoint_dialer::tests::echo_behind_endpoint;
use std::net::IpAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// A pod (an HBONE endpoint in front of an echo server) and a waypoint's client for it.
struct Pod {
    endpoint: hbone_endpoint::HboneEndpoint,
    echo: SocketAddr,
    identity: Identity,
    client: Arc<HboneClient>,
}

async fn pod() -> Pod {
    let ca = DemoCa::generate(TRUST_DOMAIN).expect("CA");
    let identity = ca.identity("shop", "web");
    let (endpoint, echo) = echo_behind_endpoint(&ca, &identity)
        .await
        .expect("endpoint");
    let certs = ca
        .cert_store(&ca.identity("shop", "waypoint"))
        .expect("certs");
    let client = HboneClient::new(certs, endpoint.local_addr.port());
    Pod {
        endpoint,
        echo,
        identity,
        client,
    }
}

async fn round_trip(tunnel: &mut PooledTunnel, message: &[u8]) {
    tunnel.write_all(message).await.expect("write");
    let mut back = vec![0; message.len()];
    tunnel.read_exact(&mut back).await.expect("read");
    assert_eq!(back, message);
}

/// 250 tunnels asked for at once share one dial per connection: exactly three
/// connections (100 + 100 + 50), every tunnel working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tunnels_share_dials_and_fill_connections() {
    let pod = pod().await;
    let opened = (0..250).map(|_| {
        let (client, identity) = (pod.client.clone(), pod.identity.clone());
        let echo = pod.echo;
        tokio::spawn(async move { client.connect(echo, &identity).await })
    });
    let mut tunnels = Vec::new();
    for task in opened.collect::<Vec<_>>() {
        tunnels.push(task.await.expect("task").expect("tunnel"));
    }
    for (i, tunnel) in tunnels.iter_mut().enumerate() {
        round_trip(tunnel, format!("tunnel {i}").as_bytes()).await;
    }
    let mut connections: Vec<usize> = pod
        .endpoint
        .accepted()
        .iter()
        .map(|a| a.connection)
        .collect();
    connections.sort_unstable();
    connections.dedup();
    assert_eq!(connections.len(), 3, "{connections:?}");
}

/// A peer whose first connection reaches `endpoint` and whose later ones hang before TLS,
/// as a pod under load might; `hung` reports each hanging connection.
async fn peer_that_hangs_after_one(endpoint: SocketAddr) -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (hung, hung_rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut held = Vec::new();
        let mut first = true;
        while let Ok((mut s, _)) = listener.accept().await {
            if std::mem::take(&mut first) {
                tokio::spawn(async move {
                    let mut up = tokio::net::TcpStream::connect(endpoint).await?;
                    tokio::io::copy_bidirectional(&mut s, &mut up).await
                });
            } else {
                held.push(s);
                let _ = hung.send(()).await;
            }
        }
    });
    (addr, hung_rx)
}

/// While a second connection to a peer is being dialled (and hangs), a tunnel that finds
/// room on the first connection opens at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_in_progress_blocks_no_stream_on_open_connections() {
    let Pod {
        endpoint,
        echo: target,
        identity: pod,
        client,
    } = pod().await;
    let (peer, mut hung) = peer_that_hangs_after_one(endpoint.local_addr).await;
    let mut full = Vec::new();
    for _ in 0..STREAMS_PER_CONNECTION {
        full.push(
            client
                .connect_via(peer, target, &pod)
                .await
                .expect("tunnel"),
        );
    }
    // The first connection is full: the next tunnel dials a second one, which hangs.
    let dialling = {
        let (client, pod) = (client.clone(), pod.clone());
        tokio::spawn(async move { client.connect_via(peer, target, &pod).await })
    };
    hung.recv().await.expect("the second dial reached the peer");
    // A slot frees up on the first connection; the next tunnel takes it without waiting.
    full.pop();
    let mut tunnel = client
        .connect_via(peer, target, &pod)
        .await
        .expect("tunnel on the open connection");
    round_trip(&mut tunnel, b"through").await;
    assert!(
        !dialling.is_finished(),
        "the hung dial cannot have finished"
    );
    dialling.abort();
}
