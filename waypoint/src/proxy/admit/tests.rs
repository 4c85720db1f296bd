use super::*;
use resilience::EndpointHealth;
use std::sync::atomic::AtomicU32;

fn limits(connections: u32, pending: u32) -> PoolLimits {
    PoolLimits {
        max_connections: connections,
        max_pending_requests: pending,
        ..PoolLimits::default()
    }
}

/// What an admitted attempt holds, as `admit` builds it.
fn hold(state: &Arc<ClusterState>, slot: Admitted) -> AttemptHold {
    let endpoint = Arc::new(EndpointState {
        addr: "127.0.0.1:1".parse().expect("addr"),
        health: EndpointHealth::new(),
        active: AtomicU32::new(1),
        since: Duration::ZERO,
    });
    AttemptHold {
        cluster: state.clone(),
        endpoint,
        outlier: None,
        hosts: 1,
        recorded: false,
        slot: Some(slot),
    }
}

/// Istio's circuit-breaking task: one in flight, one waiting, the rest refused at once; the
/// waiting one goes as soon as the first ends.
#[tokio::test]
async fn one_in_flight_one_pending_the_rest_overflow() {
    let state = Arc::new(ClusterState::default());
    let l = limits(1, 1);
    let first = hold(
        &state,
        take_slot(&state, &l, false).await.expect("admitted"),
    );
    let waiting = {
        let (state, l) = (state.clone(), l.clone());
        tokio::spawn(async move { take_slot(&state, &l, false).await.map(|_| ()) })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        !waiting.is_finished(),
        "the second request waits for the slot"
    );
    for _ in 0..18 {
        let e = take_slot(&state, &l, false).await.expect_err("overflow");
        let failure = overflow_failure(&e).expect("an overflow");
        assert_eq!(
            (failure.status, failure.flag),
            (503, Some(ResponseFlag::UpstreamOverflow))
        );
        assert_eq!(failure.body, OVERFLOW_BODY);
        assert!(!e.retry(), "Envoy does not retry an overflow");
    }
    drop(first);
    let admitted = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("woken when the slot is given back");
    assert!(admitted.expect("task").is_ok());
    assert_eq!(state.breaker.in_use(resilience::Resource::Pending), 0);
}

#[test]
fn an_overflow_answer_carries_envoys_header() {
    let headers = failure_headers(Some(ResponseFlag::UpstreamOverflow));
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0.as_str(), OVERLOADED_HEADER);
    assert_eq!(headers[0].1, "true");
    assert!(failure_headers(Some(ResponseFlag::UpstreamRequestTimeout)).is_empty());
    assert!(failure_headers(None).is_empty());
}

#[test]
fn connection_options_follow_the_pool() {
    let mut peer = HttpPeer::new("127.0.0.1:1", false, String::new());
    peer.options.read_timeout = Some(Duration::from_secs(2));
    let pool = PoolLimits {
        connect_timeout: Some(Duration::from_secs(5)),
        max_requests_per_connection: Some(1),
        idle_timeout: Some(Duration::from_secs(30)),
        max_concurrent_streams: Some(7),
        tcp_keepalive: Some(resilience::Keepalive {
            time: Some(Duration::from_secs(60)),
            ..Default::default()
        }),
        ..PoolLimits::default()
    };
    apply_pool(&mut peer, &pool);
    let o = &peer.options;
    assert_eq!(
        o.connection_timeout,
        Some(Duration::from_secs(2)),
        "the deadline bounds it"
    );
    assert_eq!(
        o.idle_timeout,
        Some(Duration::ZERO),
        "one request per connection: no reuse"
    );
    assert_eq!(o.max_h2_streams, 7);
    let k = o.tcp_keepalive.as_ref().expect("keepalive");
    assert_eq!(
        (k.idle, k.interval, k.count),
        (Duration::from_secs(60), Duration::from_secs(75), 9)
    );
}
