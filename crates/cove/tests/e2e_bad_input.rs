//! End-to-end: bad input (reliability §4.1, BI-01..BI-12, BI-21). Every bad request gets
//! Docker's status code and a message naming the problem, through the raw API (JSON
//! `{"message": ...}`) and through the CLI (non-zero exit, stderr), and changes nothing: the
//! network and container lists, the containers' directories and the fake host's kernel state
//! (links, addresses, routes, nft, mounts, processes) are the same after each case.

mod common;

use common::host;
use cove_testkit::{FakeHost, Snapshot};
use serde_json::{json, Value};

const V: &str = "/v1.45";

/// What a bad request must leave alone.
struct World {
    snap: Snapshot,
    networks: Vec<String>,
    containers: Vec<String>,
    bundles: Vec<String>,
}

fn lines(h: &FakeHost, args: &[&str]) -> Vec<String> {
    let r = h.cove(args);
    r.ok();
    let mut v: Vec<String> = r.stdout.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Names under `<data-root>/containers` (one directory per container).
fn bundles(h: &FakeHost) -> Vec<String> {
    let dir = h.inside(h.data_root().join("containers"));
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn world(h: &FakeHost) -> World {
    World {
        snap: h.snapshot(),
        networks: lines(h, &["network", "ls", "-q", "--no-trunc"]),
        containers: lines(h, &["ps", "-aq", "--no-trunc"]),
        bundles: bundles(h),
    }
}

#[track_caller]
fn assert_unchanged(h: &FakeHost, before: &World, case: &str) {
    assert_eq!(lines(h, &["network", "ls", "-q", "--no-trunc"]), before.networks, "{case}");
    assert_eq!(lines(h, &["ps", "-aq", "--no-trunc"]), before.containers, "{case}");
    assert_eq!(bundles(h), before.bundles, "{case}: container directories changed");
    common::assert_same_as(h, &before.snap, case);
}

/// One raw API request that must be refused.
struct Api {
    what: String,
    method: &'static str,
    path: String,
    body: Option<String>,
    status: &'static [u16],
    needles: Vec<String>,
}

fn api(what: &str, method: &'static str, path: &str, body: Option<Value>) -> Api {
    Api {
        what: what.to_string(),
        method,
        path: format!("{V}{path}"),
        body: body.map(|b| b.to_string()),
        status: &[400],
        needles: vec![],
    }
}

impl Api {
    fn status(mut self, s: &'static [u16]) -> Self {
        self.status = s;
        self
    }
    fn names(mut self, needles: &[&str]) -> Self {
        self.needles = needles.iter().map(|s| s.to_string()).collect();
        self
    }
    fn raw(mut self, body: &str) -> Self {
        self.body = Some(body.to_string());
        self
    }
}

#[track_caller]
fn check_api(h: &FakeHost, before: &World, c: &Api) {
    let (status, body) = h.api(c.method, &c.path, c.body.as_deref());
    let case = format!("{}: {} {} {:?}", c.what, c.method, c.path, c.body);
    assert!(c.status.contains(&status), "{case}: status {status}, want {:?}: {body}", c.status);
    let v: Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{case}: the error body is not JSON ({e}): {body}"));
    let msg = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{case}: no \"message\" in the error body: {body}"));
    for n in &c.needles {
        assert!(
            msg.to_lowercase().contains(&n.to_lowercase()),
            "{case}: the message {msg:?} does not name {n:?}"
        );
    }
    assert_unchanged(h, before, &case);
}

/// The CLI must fail with stderr naming each of `needles`.
#[track_caller]
fn check_cli(h: &FakeHost, before: &World, args: &[&str], needles: &[&str]) {
    let r = h.cove(args);
    r.fails();
    for n in needles {
        r.stderr_has(n);
    }
    assert_unchanged(h, before, &r.cmd);
}

/// Runs the cases of one table: every case is checked even when an earlier one fails (the
/// world is captured again after a failure, so one bug is reported once), and the test fails
/// at the end listing every failed case.
struct Table<'h> {
    h: &'h FakeHost,
    before: World,
    failed: Vec<String>,
}

impl<'h> Table<'h> {
    fn new(h: &'h FakeHost) -> Self {
        Table { h, before: world(h), failed: vec![] }
    }

    fn case(&mut self, what: &str, f: impl FnOnce(&FakeHost, &World)) {
        let (h, before) = (self.h, &self.before);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(h, before)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            self.failed.push(format!("[{what}] {msg}"));
            self.before = world(self.h);
        }
    }

    fn api(&mut self, c: &Api) {
        self.case(&c.what.clone(), |h, b| check_api(h, b, c));
    }

    fn cli(&mut self, args: &[&str], needles: &[&str]) {
        self.case(&format!("cove {}", args.join(" ")), |h, b| check_cli(h, b, args, needles));
    }

    #[track_caller]
    fn finish(self) {
        let n = self.failed.len();
        assert!(n == 0, "{n} case(s) failed:\n{}", self.failed.join("\n\n"));
    }
}

fn create_net(name: &str, config: Value) -> Value {
    json!({ "Name": name, "IPAM": { "Config": config } })
}

#[test]
fn network_create_refuses_bad_subnets_gateways_and_ranges() {
    let h = host("network_create_refuses_bad_subnets_gateways_and_ranges");
    h.cove(&["network", "create", "--subnet", "10.71.0.0/16", "bi-a"]).ok();
    // A route the fake host already has, on a bridge Cove does not own.
    h.sh_ok(
        "ip link add bi-rt0 type bridge && ip link set bi-rt0 up && \
         ip route add 10.73.5.0/24 dev bi-rt0",
    );
    let mut t = Table::new(&h);
    let long = "1".repeat(4096);

    // (what, subnets, extra flags, status, needles)
    type Case<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, &'static [u16], Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        ("prefix /33", vec!["10.0.0.0/33"], vec![], &[400], vec!["invalid subnet 10.0.0.0/33"]),
        ("three octets", vec!["10.0.0/24"], vec![], &[400], vec!["invalid subnet 10.0.0/24"]),
        ("IPv6 /129", vec!["::/129"], vec!["--ipv6"], &[400], vec!["invalid subnet ::/129"]),
        ("two prefixes", vec!["10.0.0.0/8/8"], vec![], &[400], vec!["invalid subnet"]),
        ("empty", vec![""], vec![], &[400], vec!["subnet"]),
        ("4 KiB", vec![long.as_str()], vec![], &[400], vec!["invalid subnet"]),
        ("host bits", vec!["10.0.0.1/8"], vec![], &[400], vec!["10.0.0.1/8", "10.0.0.0/8"]),
        ("inside a network", vec!["10.71.128.0/17"], vec![], &[403], vec!["Pool overlaps"]),
        ("same as a network", vec!["10.71.0.0/16"], vec![], &[403], vec!["Pool overlaps"]),
        ("around a network", vec!["10.0.0.0/8"], vec![], &[403], vec!["Pool overlaps"]),
        (
            "overlap in one request",
            vec!["10.72.0.0/16", "10.72.1.0/24"],
            vec![],
            &[400],
            vec!["10.72.1.0/24", "overlaps"],
        ),
        (
            "twice in one request",
            vec!["10.72.0.0/24", "10.72.0.0/24"],
            vec![],
            &[400],
            vec!["10.72.0.0/24"],
        ),
        ("a host route", vec!["10.73.5.0/24"], vec![], &[400, 403, 409], vec!["10.73.5.0/24"]),
        (
            "around a host route",
            vec!["10.73.0.0/16"],
            vec![],
            &[400, 403, 409],
            vec!["10.73.0.0/16"],
        ),
        (
            "gateway outside",
            vec!["10.74.0.0/24"],
            vec!["--gateway", "10.74.1.1"],
            &[400],
            vec!["invalid gateway 10.74.1.1"],
        ),
        (
            "gateway = network address",
            vec!["10.74.0.0/24"],
            vec!["--gateway", "10.74.0.0"],
            &[400],
            vec!["invalid gateway 10.74.0.0"],
        ),
        (
            "gateway = broadcast",
            vec!["10.74.0.0/24"],
            vec!["--gateway", "10.74.0.255"],
            &[400],
            vec!["invalid gateway 10.74.0.255"],
        ),
        (
            "ip-range outside",
            vec!["10.74.0.0/24"],
            vec!["--ip-range", "10.75.0.0/24"],
            &[400],
            vec!["invalid ip-range 10.75.0.0/24"],
        ),
        (
            "ip-range larger",
            vec!["10.74.0.0/24"],
            vec!["--ip-range", "10.74.0.0/16"],
            &[400],
            vec!["ip-range 10.74.0.0/16"],
        ),
        (
            "aux-address outside",
            vec!["10.74.0.0/24"],
            vec!["--aux-address", "router=10.75.0.9"],
            &[400],
            vec!["auxiliary address router"],
        ),
        ("IPv6 without --ipv6", vec!["fd71::/64"], vec![], &[400], vec!["IPv6"]),
    ];
    for (what, subnets, extra, status, needles) in &cases {
        // The raw API, with the extras as Docker's CLI would send them.
        let mut cfg = json!({ "Subnet": subnets[0] });
        let mut body = create_net("bi-new", json!([]));
        for f in extra.chunks(2) {
            match f {
                ["--gateway", g] => cfg["Gateway"] = json!(g),
                ["--ip-range", r] => cfg["IPRange"] = json!(r),
                ["--aux-address", a] => {
                    let (k, v) = a.split_once('=').unwrap();
                    cfg["AuxiliaryAddresses"] = json!({ k: v });
                }
                ["--ipv6"] => body["EnableIPv6"] = json!(true),
                other => panic!("unexpected flags {other:?}"),
            }
        }
        let mut configs = vec![cfg];
        configs.extend(subnets[1..].iter().map(|s| json!({ "Subnet": s })));
        body["IPAM"]["Config"] = Value::Array(configs);
        let c = api(what, "POST", "/networks/create", Some(body)).status(status).names(needles);
        t.api(&c);

        // The CLI.
        let mut args = vec!["network", "create"];
        for s in subnets {
            args.extend(["--subnet", s]);
        }
        args.extend(extra.iter().copied());
        args.push("bi-new");
        t.cli(&args, needles);
    }
    // The network that was overlapped is untouched.
    let a = common::inspect(&h, &["network", "inspect", "bi-a"]);
    assert_eq!(a["IPAM"]["Config"][0]["Subnet"], "10.71.0.0/16", "{a}");
    t.finish();
}

#[test]
fn network_create_refuses_bad_names_drivers_and_options() {
    let h = host("network_create_refuses_bad_names_drivers_and_options");
    h.cove(&["network", "create", "--subnet", "10.71.0.0/24", "bi-a"]).ok();
    let mut t = Table::new(&h);
    let long = "n".repeat(300);
    let o = "com.docker.network.";

    // Duplicate name: 409, and only one network of that name.
    let c = api("duplicate name", "POST", "/networks/create", Some(json!({"Name": "bi-a"})));
    t.api(&c.status(&[409]).names(&["bi-a", "already exists"]));
    t.cli(&["network", "create", "bi-a"], &["bi-a", "already exists"]);
    let names = lines(&h, &["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(names.iter().filter(|n| *n == "bi-a").count(), 1, "{names:?}");

    for name in ["a/b", "-x", long.as_str(), "with space", "a\tb", ".."] {
        let what = format!("network name {name:?}");
        let c = api(&what, "POST", "/networks/create", Some(json!({ "Name": name })));
        t.api(&c.names(&["invalid network name"]));
        t.cli(&["network", "create", "--", name], &["invalid network name"]);
    }
    let c = api("empty name", "POST", "/networks/create", Some(json!({"Name": ""})));
    t.api(&c.names(&["name"]));

    // (what, body fields, CLI flags, needles)
    type Case<'a> = (&'a str, Value, Vec<String>, Vec<&'a str>);
    let bad_bridge = "bi-0123456789abc";
    let cases: Vec<Case<'_>> = vec![
        ("driver foo", json!({"Driver": "foo"}), vec!["-d".into(), "foo".into()], vec!["foo"]),
        (
            "hostile driver",
            json!({"Driver": "../../bin/sh"}),
            vec!["--driver".into(), "../../bin/sh".into()],
            vec!["../../bin/sh"],
        ),
        (
            "ipam driver",
            json!({"IPAM": {"Driver": "bi-ipam"}}),
            vec!["--ipam-driver".into(), "bi-ipam".into()],
            vec!["bi-ipam"],
        ),
        (
            "unknown option",
            json!({"Options": {format!("{o}bridge.nmae"): "x"}}),
            vec!["-o".into(), format!("{o}bridge.nmae=x")],
            vec!["bridge.nmae"],
        ),
        (
            "bridge name of 16 bytes",
            json!({"Options": {format!("{o}bridge.name"): bad_bridge}}),
            vec!["-o".into(), format!("{o}bridge.name={bad_bridge}")],
            vec![bad_bridge],
        ),
        (
            "enable_icc=maybe",
            json!({"Options": {format!("{o}bridge.enable_icc"): "maybe"}}),
            vec!["-o".into(), format!("{o}bridge.enable_icc=maybe")],
            vec!["maybe", "enable_icc"],
        ),
        (
            "mtu=10",
            json!({"Options": {format!("{o}driver.mtu"): "10"}}),
            vec!["-o".into(), format!("{o}driver.mtu=10")],
            vec!["\"10\"", "mtu"],
        ),
    ];
    for (what, fields, flags, needles) in cases {
        let mut body = json!({"Name": "bi-new"});
        for (k, v) in fields.as_object().unwrap() {
            body[k] = v.clone();
        }
        let c = api(what, "POST", "/networks/create", Some(body));
        // dockerd answers 404 for a (network or IPAM) driver no plugin provides.
        let c = if what.contains("driver") { c.status(&[404]) } else { c };
        t.api(&c.names(&needles));
        let mut args = vec!["network", "create"];
        args.extend(flags.iter().map(String::as_str));
        args.push("bi-new");
        t.cli(&args, &needles);
    }
    t.finish();
}

#[test]
fn malformed_json_is_a_400_never_a_5xx() {
    let h = host("malformed_json_is_a_400_never_a_5xx");
    let mut t = Table::new(&h);
    let deep = "[".repeat(10_000);
    let cases: &[(&str, &str, &[&str])] = &[
        ("unterminated object", "{invalid", &["JSON"]),
        ("trailing garbage", "{} trailing", &["JSON"]),
        ("trailing garbage after a valid request", r#"{"Name":"bi-trail"} trailing"#, &["JSON"]),
        ("two documents", r#"{"Name":"bi-two"}{"Name":"bi-three"}"#, &["JSON"]),
        ("empty body", "", &["empty"]),
        ("blank body", "  \n", &["empty"]),
        ("null", "null", &["JSON"]),
        ("an empty array", "[]", &[]),
        ("an array of the fields", r#"["bi-seq"]"#, &["JSON"]),
        ("a number for Name", r#"{"Name": 5}"#, &["Name"]),
        ("a string for Internal", r#"{"Name":"bi-x","Internal":"yes"}"#, &["Internal"]),
        (
            "a string for IPAM.Config",
            r#"{"Name":"bi-x","IPAM":{"Config":"10.0.0.0/8"}}"#,
            &["IPAM"],
        ),
        ("a list for Options", r#"{"Name":"bi-x","Options":["a"]}"#, &["Options"]),
        ("a number for Labels", r#"{"Name":"bi-x","Labels":{"a":1}}"#, &["Labels"]),
        ("deeply nested", deep.as_str(), &["JSON"]),
        ("invalid escape", r#"{"Name":"bi-\q"}"#, &["JSON"]),
    ];
    for (what, body, needles) in cases {
        let c = api(what, "POST", "/networks/create", None).raw(body).names(needles);
        t.api(&c);
    }
    for (what, path) in [
        ("connect", "/networks/bridge/connect"),
        ("disconnect", "/networks/bridge/disconnect"),
        ("container create", "/containers/create"),
    ] {
        for body in ["{invalid", ""] {
            t.api(&api(what, "POST", path, None).raw(body));
        }
    }
    // An unsupported route: 501 with a JSON message naming it.
    for (method, path) in
        [("POST", "/swarm/init"), ("POST", "/secrets/create"), ("GET", "/volumes")]
    {
        let c = api("unsupported route", method, path, None).status(&[501]).names(&[path]);
        t.api(&c);
    }
    t.finish();
}

#[test]
fn network_rm_and_inspect_refusals() {
    let h = host("network_rm_and_inspect_refusals");
    h.cove(&["network", "create", "--subnet", "10.76.0.0/24", "bi-busy"]).ok();
    h.cove(&["run", "-d", "--name", "bi-c1", "--network", "bi-busy", "busybox", "sleep", "300"])
        .ok();
    let mut t = Table::new(&h);
    for name in ["bridge", "host", "none"] {
        let c = api("built-in", "DELETE", &format!("/networks/{name}"), None);
        t.api(&c.status(&[403]).names(&[name, "pre-defined"]));
        t.cli(&["network", "rm", name], &["pre-defined"]);
    }
    let c = api("in use", "DELETE", "/networks/bi-busy", None);
    t.api(&c.status(&[403]).names(&["bi-busy", "active endpoints"]));
    t.cli(&["network", "rm", "bi-busy"], &["active endpoints"]);
    for (method, args) in [("GET", "inspect"), ("DELETE", "rm")] {
        let c = api("unknown network", method, "/networks/bi-nope", None);
        t.api(&c.status(&[404]).names(&["network bi-nope not found"]));
        t.cli(&["network", args, "bi-nope"], &["bi-nope", "not found"]);
    }
    t.finish();
}

#[test]
fn container_requests_refuse_bad_input() {
    let h = host("container_requests_refuse_bad_input");
    h.cove(&["network", "create", "--subnet", "10.76.0.0/24", "bi-net"]).ok();
    h.cove(&["run", "-d", "--name", "bi-c1", "--network", "bi-net", "busybox", "sleep", "300"])
        .ok();
    let mut t = Table::new(&h);

    let create = |what: &str, name: &str, body: Value| {
        api(what, "POST", &format!("/containers/create?name={name}"), Some(body))
    };
    let image = |extra: Value| {
        let mut b = json!({"Image": "busybox", "Cmd": ["true"]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let on = |net: &str, ep: Value| {
        json!({"HostConfig": {"NetworkMode": net},
               "NetworkingConfig": {"EndpointsConfig": {net: ep}}})
    };
    let ipv4 = |ip: &str| json!({"IPAMConfig": {"IPv4Address": ip}});
    let api_cases = vec![
        create("unknown image", "bi-new", json!({"Image": "bi-noimage:latest", "Cmd": ["true"]}))
            .status(&[404])
            .names(&["No such image", "bi-noimage"]),
        create("duplicate name", "bi-c1", image(json!({})))
            .status(&[409])
            .names(&["bi-c1", "already in use"]),
        create("invalid name", "a%20b", image(json!({}))).names(&["invalid container name"]),
        create("--ip outside the subnet", "bi-new", image(on("bi-net", ipv4("10.76.5.5"))))
            .names(&["10.76.5.5"]),
        create("--ip on the default bridge", "bi-new", image(on("bridge", ipv4("172.17.0.50"))))
            .names(&["user defined networks"]),
        create("--ip not an address", "bi-new", image(on("bi-net", ipv4("10.76.0.300"))))
            .names(&["10.76.0.300"]),
        create("invalid MAC", "bi-new", image(json!({"MacAddress": "zz:00:00:00:00:01"})))
            .names(&["zz:00:00:00:00:01"]),
        create("multicast MAC", "bi-new", image(json!({"MacAddress": "01:00:5e:00:00:01"})))
            .names(&["01:00:5e:00:00:01", "multicast"]),
        create(
            "endpoint MAC",
            "bi-new",
            image(on("bi-net", json!({"MacAddress": "01:00:5e:00:00:01"}))),
        )
        .names(&["01:00:5e:00:00:01"]),
        create("unknown network", "bi-new", image(on("bi-nonet", json!({}))))
            .status(&[404])
            .names(&["network bi-nonet not found"]),
        create(
            "--link to a missing container",
            "bi-new",
            image(json!({"HostConfig": {"Links": ["bi-ghost:db"]}})),
        )
        .status(&[404])
        .names(&["bi-ghost"]),
    ];
    for c in &api_cases {
        t.api(c);
    }
    const GHOST: &str = "No such container: bi-ghost";
    for (method, path, body) in [
        ("POST", "/containers/bi-ghost/start", None),
        ("POST", "/containers/bi-ghost/stop", None),
        ("POST", "/containers/bi-ghost/kill", None),
        ("GET", "/containers/bi-ghost/json", None),
        ("DELETE", "/containers/bi-ghost?force=1", None),
        ("POST", "/containers/bi-ghost/exec", Some(json!({"Cmd": ["true"]}))),
    ] {
        let c = api("unknown container", method, path, body).status(&[404]).names(&[GHOST]);
        t.api(&c);
    }

    let run = |extra: &[&'static str]| {
        let mut a = vec!["run", "-d"];
        a.extend_from_slice(extra);
        a.extend(["busybox", "true"]);
        a
    };
    let cli_cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["run", "-d", "bi-noimage", "true"], &["No such image"]),
        (run(&["--name", "bi-c1"]), &["already in use"]),
        (run(&["--network", "bi-net", "--ip", "10.76.5.5"]), &["10.76.5.5"]),
        (run(&["--ip", "172.17.0.50"]), &["user defined networks"]),
        (run(&["--mac-address", "zz:00:00:00:00:01"]), &["zz:00:00:00:00:01"]),
        (run(&["--mac-address", "01:00:5e:00:00:01"]), &["01:00:5e:00:00:01"]),
        (run(&["--network", "bi-nonet"]), &["bi-nonet", "not found"]),
        (run(&["--link", "bi-ghost:db"]), &["bi-ghost"]),
        (vec!["create", "--name", "bi-c1", "busybox", "true"], &["already in use"]),
        (vec!["start", "bi-ghost"], &[GHOST]),
        (vec!["stop", "bi-ghost"], &[GHOST]),
        (vec!["container", "inspect", "bi-ghost"], &["bi-ghost"]),
        (vec!["rm", "bi-ghost"], &[GHOST]),
        (vec!["rm", "-f", "bi-ghost"], &[GHOST]),
        (vec!["exec", "bi-ghost", "true"], &[GHOST]),
    ];
    for (args, needles) in &cli_cases {
        t.cli(args, needles);
    }
    t.finish();
}

#[test]
fn connect_and_disconnect_misuse() {
    let h = host("connect_and_disconnect_misuse");
    h.cove(&["network", "create", "--subnet", "10.76.0.0/24", "bi-net"]).ok();
    h.cove(&["network", "create", "--subnet", "10.76.1.0/24", "bi-net2"]).ok();
    h.cove(&["run", "-d", "--name", "bi-c1", "--network", "bi-net", "busybox", "sleep", "300"])
        .ok();
    h.cove(&["create", "--name", "bi-c2", "--network", "bi-net", "busybox", "sleep", "300"]).ok();
    let mut t = Table::new(&h);

    let connect = |net: &str, body: Value| {
        api("connect", "POST", &format!("/networks/{net}/connect"), Some(body))
    };
    let disconnect = |net: &str, body: Value| {
        api("disconnect", "POST", &format!("/networks/{net}/disconnect"), Some(body))
    };
    let with_ip = |c: &str, ip: &str| json!({"Container": c, "EndpointConfig": {"IPAMConfig": {"IPv4Address": ip}}});
    let c1 = json!({"Container": "bi-c1"});
    let cases = vec![
        connect("bi-nonet", c1.clone()).status(&[404]).names(&["network bi-nonet not found"]),
        connect("bi-net2", json!({"Container": "bi-ghost"}))
            .status(&[404])
            .names(&["No such container: bi-ghost"]),
        connect("bi-net", c1.clone()).status(&[403]).names(&["already exists"]),
        connect("bi-net", json!({"Container": "bi-c2"})).status(&[403]).names(&["already exists"]),
        connect("bi-net2", json!({"Container": ""})).names(&["container"]),
        connect("bi-net2", with_ip("bi-c1", "10.76.9.9")).names(&["10.76.9.9"]),
        connect("bi-net2", with_ip("bi-c1", "10.76.1.0"))
            .status(&[400, 403, 409])
            .names(&["10.76.1.0"]),
        connect("bi-net2", with_ip("bi-c1", "10.76.1.255"))
            .status(&[400, 403, 409])
            .names(&["10.76.1.255"]),
        connect("bi-net2", with_ip("bi-c1", "10.76.1.1"))
            .status(&[400, 403, 409])
            .names(&["10.76.1.1"]),
        connect(
            "bi-net2",
            json!({"Container": "bi-c1", "EndpointConfig": {"MacAddress": "01:00:5e:00:00:01"}}),
        )
        .names(&["01:00:5e:00:00:01"]),
        connect("bridge", with_ip("bi-c1", "172.17.0.50")).names(&["user defined networks"]),
        disconnect("bi-nonet", c1.clone()).status(&[404]).names(&["network bi-nonet not found"]),
        disconnect("bi-net", json!({"Container": "bi-ghost"})).status(&[404]).names(&["bi-ghost"]),
        disconnect("bi-net2", c1.clone()).status(&[400, 403, 404, 409]).names(&["not connected"]),
        disconnect("bi-net2", json!({"Container": "bi-c2"}))
            .status(&[400, 403, 404, 409])
            .names(&["not connected"]),
    ];
    for c in &cases {
        t.api(c);
    }
    let cli: &[(&[&str], &[&str])] = &[
        (&["network", "connect", "bi-nonet", "bi-c1"], &["bi-nonet", "not found"]),
        (&["network", "connect", "bi-net2", "bi-ghost"], &["No such container: bi-ghost"]),
        (&["network", "connect", "bi-net", "bi-c1"], &["already exists"]),
        (&["network", "connect", "--ip", "10.76.9.9", "bi-net2", "bi-c1"], &["10.76.9.9"]),
        (&["network", "connect", "--ip", "10.76.1.0", "bi-net2", "bi-c1"], &["10.76.1.0"]),
        (&["network", "connect", "--ip", "10.76.1.255", "bi-net2", "bi-c1"], &["10.76.1.255"]),
        (&["network", "disconnect", "bi-nonet", "bi-c1"], &["bi-nonet", "not found"]),
        (&["network", "disconnect", "bi-net", "bi-ghost"], &["bi-ghost"]),
        (&["network", "disconnect", "bi-net2", "bi-c1"], &["not connected"]),
    ];
    for (args, needles) in cli {
        t.cli(args, needles);
    }
    // The refused connects left bi-c1 on bi-net only, with its address and a working link.
    let v = common::inspect(&h, &["inspect", "bi-c1"]);
    let nets: Vec<&String> = v["NetworkSettings"]["Networks"].as_object().unwrap().keys().collect();
    assert_eq!(nets, ["bi-net"], "{v}");
    let links = h.cove(&["exec", "bi-c1", "ip", "-o", "link"]);
    links.ok();
    assert_eq!(links.stdout.lines().filter(|l| l.contains(": eth")).count(), 1, "{links}");
    t.finish();
}
