//! The demo client's HBONE side, as ztunnel's outbound is for a pod whose destination service
//! uses a waypoint: mTLS HTTP/2 connections to the waypoint with the client's identity, and one
//! CONNECT stream per tunnel whose `:authority` is the service `VIP:port` the client dialled.
//! The TCP connection goes to the waypoint; the VIP only travels in the CONNECT request.

use crate::hbone::client::{HboneClient, HboneError, PooledTunnel};
use crate::hbone::tls::client_config;
use crate::identity::CertStore;
use authz::Identity;
use std::net::SocketAddr;
use std::sync::Arc;

/// Why a tunnel could not be opened (connect, TLS, HTTP/2, or a refused CONNECT).
pub type DialError = HboneError;
/// An open tunnel; dropping it frees its slot on the pooled connection.
pub type Tunnel = PooledTunnel;

/// Opens tunnels through one HBONE peer (the waypoint) over pooled connections.
#[derive(Debug)]
pub struct WaypointDialer {
    client: Arc<HboneClient>,
    addr: SocketAddr,
    peer: Identity,
    own: Identity,
}

impl WaypointDialer {
    /// Dials `addr`, presenting the identity in `certs` and requiring the peer to be `peer`.
    pub fn new(
        certs: Arc<CertStore>,
        addr: SocketAddr,
        peer: Identity,
    ) -> Result<Arc<Self>, rustls::Error> {
        // Built once here so a bad certificate shows at start-up, not on the first request.
        client_config(certs.clone(), peer.clone())?;
        let own = certs.current().identity.clone();
        Ok(Arc::new(WaypointDialer {
            client: HboneClient::new(certs, addr.port()),
            addr,
            peer,
            own,
        }))
    }

    /// The identity the client presents.
    pub fn own_identity(&self) -> &Identity {
        &self.own
    }

    /// The identity the peer must present.
    pub fn peer_identity(&self) -> &Identity {
        &self.peer
    }

    /// Opens a tunnel to `authority` (a service `VIP:port`, or a pod `IP:port`) through the
    /// peer. A refusal (any status but 200) is an error carrying the status.
    pub async fn open(&self, authority: SocketAddr) -> Result<Tunnel, DialError> {
        self.client
            .connect_via(self.addr, authority, &self.peer)
            .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::demo::ca::{DemoCa, TRUST_DOMAIN};
    use crate::demo::hbone_endpoint;
    use std::net::IpAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HBONE endpoint on an ephemeral loopback port in front of an echo server.
    pub(crate) async fn echo_behind_endpoint(
        ca: &DemoCa,
        pod: &Identity,
    ) -> anyhow::Result<(hbone_endpoint::HboneEndpoint, SocketAddr)> {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let echo_addr = echo.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let endpoint =
            hbone_endpoint::spawn(SocketAddr::new(loopback, 0), ca.cert_store(pod)?, loopback)
                .await?;
        Ok((endpoint, echo_addr))
    }

    #[tokio::test]
    async fn tunnels_share_a_connection_and_carry_bytes() -> anyhow::Result<()> {
        let ca = DemoCa::generate(TRUST_DOMAIN)?;
        let pod = ca.identity("travel-agency", "travels");
        let client = ca.identity("travel-portal", "voyages");
        let (endpoint, echo) = echo_behind_endpoint(&ca, &pod).await?;
        let dialer = WaypointDialer::new(ca.cert_store(&client)?, endpoint.local_addr, pod)?;
        for message in [&b"first"[..], b"second"] {
            let mut tunnel = dialer.open(echo).await?;
            tunnel.write_all(message).await?;
            let mut back = vec![0; message.len()];
            tunnel.read_exact(&mut back).await?;
            assert_eq!(back, message);
        }
        let accepted = endpoint.accepted();
        assert_eq!(accepted.len(), 2);
        assert!(accepted.iter().all(|a| a.connection == 0), "{accepted:?}");
        assert_eq!(accepted[0].source, client.to_string());
        assert_eq!(accepted[0].authority, echo.to_string());
        Ok(())
    }

    #[tokio::test]
    async fn refusals_and_wrong_identities_are_errors() -> anyhow::Result<()> {
        let ca = DemoCa::generate(TRUST_DOMAIN)?;
        let pod = ca.identity("travel-agency", "travels");
        let client = ca.cert_store(&ca.identity("travel-portal", "voyages"))?;
        let (endpoint, _) = echo_behind_endpoint(&ca, &pod).await?;

        // The endpoint forwards only to its own pod's IP.
        let dialer = WaypointDialer::new(client.clone(), endpoint.local_addr, pod)?;
        let elsewhere = SocketAddr::from(([127, 0, 0, 2], 80));
        let refused = dialer.open(elsewhere).await.map(|_| ()).unwrap_err();
        assert!(
            matches!(refused, DialError::Refused { status, .. } if status == http::StatusCode::BAD_REQUEST),
            "{refused}"
        );

        let impostor = ca.identity("travel-agency", "hotels");
        let dialer = WaypointDialer::new(client, endpoint.local_addr, impostor)?;
        let mismatch = dialer.open(elsewhere).await.map(|_| ()).unwrap_err();
        assert!(matches!(mismatch, DialError::Tls { .. }), "{mismatch}");
        Ok(())
    }
}
