//! Prometheus metrics (issue 17): `cove daemon --metrics-addr 127.0.0.1:9323` inside a fake
//! host. Objects appear and go with containers and networks; an isolation drop counted by
//! nft is the metric's value exactly (with a positive control and proof that every dropped
//! probe arrived); endpoint traffic grows by what a container sent; promtool accepts the
//! exposition and a real Prometheus scrapes it up; per-endpoint series can be switched off;
//! a non-loopback address is refused without `--metrics-allow-remote`.

mod common;

use common::*;
use cove_testkit::FakeHost;

const METRICS: &str = "127.0.0.1:9323";

/// One scrape of the daemon's metrics listener, from inside the fake host.
#[track_caller]
fn scrape(h: &FakeHost) -> String {
    let (status, body) =
        h.http_get(METRICS, "/metrics").unwrap_or_else(|e| panic!("GET {METRICS}/metrics: {e}"));
    assert_eq!(status, 200, "GET /metrics: {body}");
    body
}

/// The value of the series `series` (name and labels exactly as exposed), if exposed.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[track_caller]
fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Packets counted by one of Cove's own named counters (`nft list counter FAMILY cove NAME`).
#[track_caller]
fn nft_counter(h: &FakeHost, family: &str, name: &str) -> u64 {
    common::nft_packets(h, &format!("{family} cove"), name)
}

/// Send `n` UDP datagrams of `size` bytes from inside `container` to `to`.
fn udp_burst(h: &FakeHost, container: &str, to: &str, n: usize, size: usize) {
    let to: std::net::SocketAddr = to.parse().unwrap();
    in_container_netns(h, container, || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        let payload = vec![b'x'; size];
        for i in 0..n {
            s.send_to(&payload, to).expect("send");
            if i % 64 == 63 {
                // Let the veth's backlog drain: a count must not depend on a full queue.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    });
}

#[test]
fn metrics_follow_objects_drops_and_traffic() {
    let mut h =
        host_with("metrics_follow_objects_drops_and_traffic", |_| {}, &["--metrics-addr", METRICS]);
    let text = scrape(&h);
    assert_eq!(must(&text, r#"cove_networks{driver="bridge",scope="local"}"#), 1.0, "{text}");
    assert_eq!(must(&text, r#"cove_containers{state="running"}"#), 0.0);
    assert!(value(&text, r#"cove_firewall_drops_total{reason="isolation"}"#).is_some(), "{text}");

    h.cove(&["network", "create", "--subnet", "10.73.1.0/24", "ma"]).ok();
    h.cove(&["network", "create", "--subnet", "10.73.2.0/24", "mb"]).ok();
    tcp_server(&h, "s1", &["--network", "ma", "--ip", "10.73.1.10"], "hello-ma");
    sleeper(&h, "c1", &["--network", "ma"]);
    sleeper(&h, "c2", &["--network", "mb"]);
    wait_listening(&h, "s1", 8080);

    let text = scrape(&h);
    assert_eq!(must(&text, r#"cove_networks{driver="bridge",scope="local"}"#), 3.0, "{text}");
    assert_eq!(must(&text, r#"cove_endpoints{network="ma",driver="bridge"}"#), 2.0);
    assert_eq!(must(&text, r#"cove_endpoints{network="mb",driver="bridge"}"#), 1.0);
    assert_eq!(must(&text, r#"cove_containers{state="running"}"#), 3.0);
    assert_eq!(must(&text, r#"cove_ipam_addresses{network="ma",family="ipv4",state="used"}"#), 2.0);
    // 256 less network, broadcast, gateway and the two endpoints.
    assert_eq!(
        must(&text, r#"cove_ipam_addresses{network="ma",family="ipv4",state="free"}"#),
        251.0
    );
    // The API's requests so far, by route template (never the raw path).
    assert!(
        must(
            &text,
            r#"cove_api_requests_total{method="POST",route="/networks/create",code="201"}"#
        ) >= 2.0
    );
    assert!(must(&text, r#"cove_network_actions_seconds_count{action="create"}"#) >= 2.0);

    // Positive control: c1 reaches s1 on its own network.
    let r = exec_probe(&h, "c1", "10.73.1.10");
    assert!(r.stdout.contains("hello-ma"), "c1 -> s1 on their network: {r}");

    // Across networks: every probe arrives at the host (the harness's own counter, before
    // Cove's chains) and is dropped by isolation; the metric is nft's counter, exactly.
    h.add_probe_counter("mb_to_ma", "ip saddr 10.73.2.0/24 ip daddr 10.73.1.10 udp dport 9999");
    let before = scrape(&h);
    let metric0 = must(&before, r#"cove_firewall_drops_total{reason="isolation"}"#);
    let nft0 = nft_counter(&h, "inet", "drop_isolation");
    assert_eq!(metric0, nft0 as f64, "the metric is the nft counter");
    const PROBES: usize = 100;
    udp_burst(&h, "c2", "10.73.1.10:9999", PROBES, 32);
    assert_eq!(h.probe_counter("mb_to_ma"), PROBES as u64, "every probe reached the host");
    let after = scrape(&h);
    let metric1 = must(&after, r#"cove_firewall_drops_total{reason="isolation"}"#);
    let nft1 = nft_counter(&h, "inet", "drop_isolation");
    assert_eq!(metric1 - metric0, PROBES as f64, "isolation drops counted by the metric");
    assert_eq!(metric1, nft1 as f64, "the metric equals the nft counter it reads");
    assert_eq!(nft1 - nft0, PROBES as u64);

    // Endpoint traffic, from the container's side: 10 MB that c1 sent to s1.
    let series = |dir: &str, c: &str| {
        format!(r#"cove_endpoint_{dir}_bytes_total{{container="{c}",network="ma"}}"#)
    };
    let (tx0, rx0) = (must(&after, &series("tx", "c1")), must(&after, &series("rx", "s1")));
    udp_burst(&h, "c1", "10.73.1.10:9999", 10_000, 1_000);
    let text = scrape(&h);
    let (tx1, rx1) = (must(&text, &series("tx", "c1")), must(&text, &series("rx", "s1")));
    assert!(tx1 - tx0 >= 10_000_000.0, "c1 sent {} bytes", tx1 - tx0);
    assert!(rx1 - rx0 >= 10_000_000.0, "s1 received {} bytes", rx1 - rx0);

    // Someone deletes Cove's table: the daemon restores it, and counts why.
    let restores = r#"cove_firewall_restores_total{cause="outside_change"}"#;
    let before = value(&scrape(&h), restores).unwrap_or(0.0);
    h.sh_ok("nft delete table inet cove");
    wait_until("the restore counted", 10, || {
        value(&scrape(&h), restores).is_some_and(|v| v > before)
    });
    wait_until("the table back", 10, || h.sh("nft list table inet cove").status.success());

    // The same exposition on the API socket.
    let (status, body) = h.api("GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(body.contains("cove_endpoints{network=\"ma\",driver=\"bridge\"} 2"), "{body}");

    // Gone with the containers and the networks.
    h.cove(&["rm", "-f", "s1", "c1", "c2"]).ok();
    h.cove(&["network", "rm", "ma", "mb"]).ok();
    let text = scrape(&h);
    assert_eq!(must(&text, r#"cove_networks{driver="bridge",scope="local"}"#), 1.0, "{text}");
    assert_eq!(must(&text, r#"cove_containers{state="running"}"#), 0.0);
    assert!(!text.contains("network=\"ma\"") && !text.contains("network=\"mb\""), "{text}");
    assert!(!text.contains("cove_endpoint_"), "{text}");

    // Per-endpoint series off: objects stay, traffic series go.
    h.stop_daemon();
    h.start_daemon(&["--metrics-addr", METRICS, "--metrics-per-endpoint=false"]);
    sleeper(&h, "c3", &[]);
    let text = scrape(&h);
    assert_eq!(must(&text, r#"cove_endpoints{network="bridge",driver="bridge"}"#), 1.0, "{text}");
    assert!(!text.contains("cove_endpoint_"), "{text}");
    h.cove(&["rm", "-f", "c3"]).ok();

    // No unauthenticated remote exposure by default; a bad address says what is expected.
    h.stop_daemon();
    let e = h.try_start_daemon(&["--metrics-addr", "0.0.0.0:9323"]).unwrap_err();
    assert!(e.contains("not a loopback address") && e.contains("--metrics-allow-remote"), "{e}");
    let e = h.try_start_daemon(&["--metrics-addr", "localhost"]).unwrap_err();
    assert!(e.contains("invalid --metrics-addr") && e.contains("127.0.0.1:9323"), "{e}");
}

#[test]
fn promtool_accepts_the_metrics_and_prometheus_scrapes_them() {
    cove_testkit::require_prometheus!();
    let h = host_with(
        "promtool_accepts_the_metrics_and_prometheus_scrapes_them",
        |_| {},
        &["--metrics-addr", METRICS],
    );
    h.cove(&["network", "create", "--subnet", "10.74.1.0/24", "pa"]).ok();
    sleeper(&h, "p1", &["--network", "pa"]);
    sleeper(&h, "p2", &["--network", "pa"]);
    // Feed the resolver's series: a local name.
    exec_ok(&h, "p1", &["nslookup", "p2"]);
    let text = scrape(&h);
    assert!(must(&text, r#"cove_dns_queries_total{rcode="NOERROR",qtype="A"}"#) >= 1.0, "{text}");
    assert!(text.contains("cove_endpoint_rx_bytes_total{container=\"p1\",network=\"pa\"}"));
    cove_testkit::promtool_check_metrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let mut prom = cove_testkit::Prometheus::start(&h, METRICS);
    prom.wait_up(&h);
    let r = prom.query(&h, r#"cove_containers{state="running"}"#).unwrap();
    assert_eq!(r[0]["value"][1], "2", "{r}");
    let r = prom.query(&h, r#"cove_endpoints{network="pa"}"#).unwrap();
    assert_eq!(r[0]["value"][1], "2", "{r}");
    drop(prom);
    h.cove(&["rm", "-f", "p1", "p2"]).ok();
    h.cove(&["network", "rm", "pa"]).ok();
}
