use super::*;

fn sample() -> Snapshot {
    Snapshot {
        networks: vec![
            NetworkSample {
                name: "bridge".into(),
                driver: "bridge".into(),
                scope: "local".into(),
                endpoints: 1,
                ipam: vec![IpamSample { family: "ipv4", used: 1.0, free: 65532.0 }],
                fdb_entries: None,
            },
            NetworkSample {
                name: "ov\"er\\lay\n".into(),
                driver: "overlay".into(),
                scope: "global".into(),
                endpoints: 0,
                ipam: vec![IpamSample { family: "ipv6", used: 2.0, free: 1.8446744073709552e19 }],
                fdb_entries: Some(3),
            },
        ],
        containers: [("running".to_string(), 2)].into_iter().collect(),
        endpoints: vec![EndpointTraffic {
            container: "web".into(),
            network: "bridge".into(),
            rx_bytes: 1000,
            rx_packets: 10,
            tx_bytes: 2000,
            tx_packets: 20,
            ..Default::default()
        }],
        drops: vec![DropSample { reason: "isolation".into(), packets: 7, bytes: 420 }],
    }
}

/// Every sample line of `text` whose name and labels start with `prefix`, with its value.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn live_and_scrape_time_values_are_rendered_with_bounded_labels() {
    let m = Metrics::default();
    m.api_request("GET", "/networks/{id}", 200, Duration::from_millis(3));
    m.api_request("BREW", "unmatched", 501, Duration::from_millis(1));
    m.network_action("create", Duration::from_millis(20));
    m.firewall_sync(FirewallWrite::Full, Duration::from_millis(12), true);
    m.firewall_sync(FirewallWrite::Elements, Duration::from_millis(1), false);
    m.firewall_restore(RestoreCause::OutsideChange);
    m.reconcile_fix(labels::variant("CreateBridge { name: \"x\" }"));
    m.dns().query(3, 1);
    m.dns().query(0, 4242);
    m.dns().forwarded(Forwarded::Answered);
    m.dns().upstream(Duration::from_millis(30));
    let text = m.render(&sample());
    let v = |s| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        v(r#"cove_api_requests_total{method="GET",route="/networks/{id}",code="200"}"#),
        1.0
    );
    assert_eq!(v(r#"cove_api_requests_total{method="other",route="unmatched",code="501"}"#), 1.0);
    assert_eq!(v(r#"cove_api_request_seconds_count{method="GET",route="/networks/{id}"}"#), 1.0);
    assert_eq!(v(r#"cove_network_actions_seconds_count{action="create"}"#), 1.0);
    assert_eq!(v(r#"cove_firewall_sync_seconds_count{write="full"}"#), 1.0);
    assert_eq!(v("cove_firewall_sync_failures_total"), 1.0);
    assert_eq!(v(r#"cove_firewall_restores_total{cause="outside_change"}"#), 1.0);
    assert_eq!(v(r#"cove_reconcile_fixes_total{kind="create_bridge"}"#), 1.0);
    assert_eq!(v(r#"cove_dns_queries_total{rcode="NXDOMAIN",qtype="A"}"#), 1.0);
    assert_eq!(v(r#"cove_dns_queries_total{rcode="NOERROR",qtype="other"}"#), 1.0);
    assert_eq!(v(r#"cove_dns_forwarded_total{result="answered"}"#), 1.0);
    assert_eq!(v("cove_dns_upstream_seconds_count"), 1.0);
    assert_eq!(v(r#"cove_networks{driver="bridge",scope="local"}"#), 1.0);
    assert_eq!(v(r#"cove_endpoints{network="bridge",driver="bridge"}"#), 1.0);
    assert_eq!(v(r#"cove_containers{state="running"}"#), 2.0);
    assert_eq!(v(r#"cove_containers{state="exited"}"#), 0.0);
    assert_eq!(v(r#"cove_ipam_addresses{network="bridge",family="ipv4",state="free"}"#), 65532.0);
    // A name with quotes, a backslash and a newline is escaped, not broken.
    assert_eq!(v(r#"cove_overlay_fdb_entries{network="ov\"er\\lay\n"}"#), 3.0);
    assert_eq!(v(r#"cove_endpoint_tx_bytes_total{container="web",network="bridge"}"#), 2000.0);
    assert_eq!(v(r#"cove_firewall_drops_total{reason="isolation"}"#), 7.0);
    assert_eq!(v(r#"cove_firewall_dropped_bytes_total{reason="isolation"}"#), 420.0);
    // Outside a cluster, no cluster series.
    assert!(!text.contains("cove_cluster_"), "{text}");
    // Every family has its HELP and TYPE.
    assert!(text.contains("# TYPE cove_api_requests_total counter\n"), "{text}");
    assert!(text.contains("# TYPE cove_api_request_seconds histogram\n"), "{text}");
    assert!(text.contains("# TYPE cove_containers gauge\n"), "{text}");
}

#[test]
fn per_endpoint_series_can_be_switched_off() {
    let m = Metrics::new(Options { per_endpoint: false });
    let text = m.render(&sample());
    assert!(!text.contains("cove_endpoint_"), "{text}");
    assert!(text.contains("cove_endpoints{"), "{text}");
}

#[test]
fn cluster_series_follow_the_store() {
    let m = Metrics::default();
    m.set_in_cluster();
    m.cluster_request("list", Duration::from_millis(2), true);
    let text = m.render(&Snapshot::default());
    assert_eq!(value(&text, "cove_cluster_store_up"), Some(1.0), "{text}");
    m.cluster_request("list", Duration::from_secs(5), false);
    m.cluster_watch_resync();
    m.cluster_nodes(2, 1);
    let text = m.render(&Snapshot::default());
    assert_eq!(value(&text, r#"cove_nodes{state="ready"}"#), Some(2.0), "{text}");
    assert_eq!(value(&text, r#"cove_nodes{state="down"}"#), Some(1.0), "{text}");
    assert_eq!(value(&text, "cove_cluster_store_up"), Some(0.0), "{text}");
    assert_eq!(value(&text, "cove_cluster_watch_resyncs_total"), Some(1.0), "{text}");
    assert_eq!(
        value(&text, r#"cove_cluster_store_request_seconds_count{op="list"}"#),
        Some(2.0),
        "{text}"
    );
}

/// `promtool check metrics` (Debian's `prometheus`) accepts the exposition: lint rules
/// included (names, units, `_total`, HELP on every family).
#[test]
fn promtool_accepts_the_exposition() {
    let have = std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("COVE_REQUIRE_PROMETHEUS").is_none(),
            "promtool not installed, and COVE_REQUIRE_PROMETHEUS is set"
        );
        eprintln!("SKIP promtool_accepts_the_exposition: promtool not installed (Debian prometheus; scripts/setup.sh installs it)");
        return;
    }
    let m = Metrics::default();
    m.set_in_cluster();
    m.api_request("GET", "/_ping", 200, Duration::from_millis(1));
    m.cluster_request("write", Duration::from_millis(2), true);
    m.dns().query(0, 1);
    let text = m.render(&sample());
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Acceptance check 7's budget, counted: 2,000 containers on one network give six series
/// each plus a fixed part; without per-endpoint series, a few hundred at most.
#[test]
fn series_stay_within_the_cardinality_budget() {
    let mut snap = sample();
    snap.endpoints = (0..2000)
        .map(|i| EndpointTraffic {
            container: format!("c{i}"),
            network: "bridge".into(),
            ..Default::default()
        })
        .collect();
    let m = Metrics::default();
    m.api_request("GET", "/containers/json", 200, Duration::from_millis(1));
    m.dns().query(0, 1);
    let series = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    let off = Metrics::new(Options { per_endpoint: false });
    off.api_request("GET", "/containers/json", 200, Duration::from_millis(1));
    off.dns().query(0, 1);
    let fixed = series(&off.render(&snap));
    assert!(fixed <= 300, "{fixed} series without per-endpoint ones");
    let all = series(&m.render(&snap));
    assert!(all <= 2000 * 6 + fixed, "{all} series for 2,000 endpoints");
    assert!(all >= 2000 * 6, "{all}: every endpoint has its six series");
}
