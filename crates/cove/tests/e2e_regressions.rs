//! End-to-end regression tests, each named after the bug it pins down.

mod common;

use common::host;

/// `run --rm` of a container that exits at once lost its output: the attach only started
/// reading after the start, when the container (and its log) could already be gone.
#[test]
fn run_rm_keeps_output_of_a_container_that_exits_at_once() {
    let h = host("run_rm_keeps_output_of_a_container_that_exits_at_once");
    let baseline = h.snapshot();
    for i in 0..10 {
        let marker = format!("fast-{i}");
        let r = h.cove(&["run", "--rm", "busybox", "echo", &marker]);
        r.ok();
        assert_eq!(r.stdout.trim(), marker, "run {i}: {r:?}");
    }
    let r = h.cove(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(r.status, 5, "{r:?}");
    assert_eq!(r.stdout.trim(), "out");
    assert_eq!(r.stderr.trim(), "err");
    assert_eq!(h.cove(&["ps", "-aq"]).out(), "", "--rm containers must be gone");
    h.assert_no_leaks(&baseline);
}

/// With `--iptables=false` there is nothing to publish ports with: `-p` must not create a
/// container that looks published but is unreachable. It is refused and nothing is created.
#[test]
fn publishing_ports_is_refused_without_the_firewall() {
    let mut h = cove_testkit::FakeHost::new(
        "publishing_ports_is_refused_without_the_firewall",
        std::path::Path::new(env!("CARGO_BIN_EXE_cove")),
    );
    h.start_daemon(&["--iptables=false"]);
    h.import_busybox("busybox");
    let baseline = h.snapshot();
    for args in [
        &["run", "-d", "-p", "8080:80", "busybox", "sleep", "60"][..],
        &["create", "-P", "--expose", "80", "busybox", "sleep", "60"][..],
    ] {
        let r = h.cove(args);
        r.fails().stderr_has("publishing ports");
    }
    // A container with -P but nothing exposed publishes nothing, and is fine.
    h.cove(&["create", "--name", "p0", "-P", "busybox", "true"]).ok();
    h.cove(&["rm", "p0"]).ok();
    assert_eq!(h.cove(&["ps", "-aq"]).out(), "");
    let tables = h.sh_ok("nft list tables");
    assert!(!tables.contains("cove"), "no firewall tables with --iptables=false: {tables}");
    h.assert_no_leaks(&baseline);
}

/// A rule someone else inserts into Cove's tables (an `accept` at the top of `forward`
/// opens every network to every other) was left in place: only deletions and flushes
/// triggered a restore. Any foreign change to Cove's tables is now undone.
#[test]
fn a_foreign_rule_inserted_into_coves_tables_is_removed() {
    let h = host("a_foreign_rule_inserted_into_coves_tables_is_removed");
    let first_rule = || {
        // Line 3: after the table, chain and hook lines.
        h.sh_ok("nft list chain inet cove forward").lines().nth(3).unwrap_or("").trim().to_string()
    };
    let genuine = first_rule();
    assert_ne!(genuine, "accept");
    h.sh_ok("nft insert rule inet cove forward accept");
    let t = std::time::Instant::now();
    // The daemon may already have undone it (it takes ~20 ms): the log proves it noticed.
    while first_rule() == "accept" || !h.daemon_log().contains("changed from outside") {
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "not restored within 1 s");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(first_rule(), genuine);
}
