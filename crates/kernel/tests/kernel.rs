//! Privileged integration tests of the kernel executor. Each test runs in a fresh network
//! namespace and a private mount namespace it creates itself (see `support`); sandbox netns
//! files live on a tmpfs mounted only inside that mount namespace. Traffic stays inside the
//! test's own namespaces.

mod support;

use std::io::ErrorKind as IoKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cove_drivers::plan::{Netns, Op};
use cove_firewall::{
    ElementDelta, EndpointRules, FirewallModel, LinkRule, NetworkRules, Proto, PublishedPort,
};
use cove_kernel::{Kernel, LinkInfo};
use cove_model::{ErrorKind, MacAddr};
use support::*;

const MAC: MacAddr = MacAddr([0x02, 0x42, 10, 123, 0, 2]);

fn bridge_ops(name: &str) -> Vec<Op> {
    vec![
        Op::CreateBridge {
            name: name.into(),
            group: cove_drivers::plan::OWNED_LINK_GROUP,
            mtu: 1400,
            mac: cove_model::MacAddr([2, 0x42, 1, 2, 3, 4]),
        },
        Op::Sysctl {
            netns: Netns::Host,
            key: format!("net/ipv6/conf/{name}/disable_ipv6"),
            value: "0".into(),
        },
        Op::AddAddress {
            netns: Netns::Host,
            link: name.into(),
            addr: "10.123.0.1/24".parse().unwrap(),
        },
        Op::AddAddress {
            netns: Netns::Host,
            link: name.into(),
            addr: "fd00:123::1/64".parse().unwrap(),
        },
        Op::SetUp { netns: Netns::Host, link: name.into() },
    ]
}

fn veth_op(host_name: &str, bridge: &str, ns: &Path) -> Op {
    Op::CreateVeth {
        host_name: host_name.into(),
        group: cove_drivers::plan::OWNED_LINK_GROUP,
        bridge: bridge.into(),
        mtu: 1400,
        peer_name: "eth0".into(),
        peer_netns: ns.to_owned(),
        peer_mac: MAC,
    }
}

fn join_ops(host_name: &str, bridge: &str, ns: &Path) -> Vec<Op> {
    let sb = Netns::Path(ns.to_owned());
    vec![
        veth_op(host_name, bridge, ns),
        Op::Sysctl {
            netns: sb.clone(),
            key: "net/ipv6/conf/eth0/disable_ipv6".into(),
            value: "0".into(),
        },
        Op::AddAddress {
            netns: sb.clone(),
            link: "eth0".into(),
            addr: "10.123.0.2/24".parse().unwrap(),
        },
        Op::AddAddress {
            netns: sb.clone(),
            link: "eth0".into(),
            addr: "fd00:123::2/64".parse().unwrap(),
        },
        Op::SetUp { netns: sb.clone(), link: "eth0".into() },
        Op::AddRoute {
            netns: sb.clone(),
            dst: "0.0.0.0/0".parse().unwrap(),
            gateway: Some("10.123.0.1".parse().unwrap()),
            link: "eth0".into(),
        },
        Op::AddRoute {
            netns: sb,
            dst: "::/0".parse().unwrap(),
            gateway: Some("fd00:123::1".parse().unwrap()),
            link: "eth0".into(),
        },
    ]
}

async fn link(k: &Kernel, name: &str) -> Option<LinkInfo> {
    k.links().await.unwrap().into_iter().find(|l| l.name == name)
}

fn sandbox_links(ns: &Path) -> Vec<LinkInfo> {
    block_on_in_netns(ns, || async { Kernel::new().await.unwrap().links().await.unwrap() })
}

/// TCP connect from inside `ns` to `to`; Ok(()) on connect, Err(kind) otherwise.
fn connect_from(ns: &Path, to: SocketAddr) -> Result<(), IoKind> {
    in_netns(ns, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(3)).map(drop).map_err(|e| e.kind())
    })
}

fn read_sysctl(key: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(key)).unwrap().trim().to_owned()
}

#[test]
fn runs_in_a_fresh_netns() {
    in_fresh_netns(|_dir| async {
        let own = thread_netns_inode();
        assert_ne!(own, process_netns_inode(), "test must not run in the netns it started in");
        match init_netns_inode() {
            Some(init) => assert_ne!(own, init, "test must not run in PID 1's netns"),
            None => eprintln!(
                "note: /proc/1/ns/net is not readable here; compared with the process netns only"
            ),
        }
        let k = Kernel::new().await.unwrap();
        let links = k.links().await.unwrap();
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["lo"], "a fresh netns has only lo");
        assert!(k.route_prefixes().await.unwrap().is_empty());
    });
}

#[test]
fn bridge_with_addresses_comes_up() {
    in_fresh_netns(|_dir| async {
        let k = Kernel::new().await.unwrap();
        k.apply(&bridge_ops("cove-t1")).await.unwrap();
        let br = link(&k, "cove-t1").await.expect("bridge exists");
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert_eq!(br.mtu, 1400);
        assert!(br.up);
        assert_eq!(br.master, None);
        let prefixes = k.route_prefixes().await.unwrap();
        assert!(prefixes.contains(&"10.123.0.0/24".parse().unwrap()), "{prefixes:?}");
        assert!(prefixes.contains(&"fd00:123::/64".parse().unwrap()), "{prefixes:?}");
        assert!(prefixes.iter().all(|p| p.prefix_len() > 0 && !p.to_string().starts_with("fe80")));

        // Re-applying addresses is idempotent; re-creating the bridge is a conflict.
        k.apply(&bridge_ops("cove-t1")[1..]).await.unwrap();
        let e = k.apply(&bridge_ops("cove-t1")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(
            e.to_string()
                .starts_with("create bridge cove-t1 mtu 1400 mac 02:42:01:02:03:04: File exists"),
            "{e}"
        );
        // The failed apply rolled back nothing that existed before.
        assert!(link(&k, "cove-t1").await.is_some());

        // A sysctl on the host netns reads back.
        k.apply(&[Op::Sysctl {
            netns: Netns::Host,
            key: "net/ipv6/conf/cove-t1/disable_ipv6".into(),
            value: "1".into(),
        }])
        .await
        .unwrap();
        assert_eq!(read_sysctl("net/ipv6/conf/cove-t1/disable_ipv6"), "1");
    });
}

#[test]
fn sandbox_on_a_bridge_end_to_end() {
    in_fresh_netns(|dir| async move {
        let k = Kernel::new().await.unwrap();
        let ns = dir.join("netns/sb1");
        k.apply(&bridge_ops("cove-t2")).await.unwrap();
        k.create_netns(&ns).await.unwrap();
        k.apply(&join_ops("vethc0ffee", "cove-t2", &ns)).await.unwrap();

        // Host side: the veth is enslaved, up, with the MTU asked for.
        let br = link(&k, "cove-t2").await.unwrap();
        let veth = link(&k, "vethc0ffee").await.expect("host end exists");
        assert_eq!(veth.kind.as_deref(), Some("veth"));
        assert_eq!(veth.master, Some(br.index));
        assert_eq!(veth.mtu, 1400);
        assert!(veth.up);
        assert!(
            k.links().await.unwrap().iter().all(|l| l.name != "eth0"),
            "peer is not on the host"
        );

        // Sandbox side: lo and eth0 up, created in place with the MAC asked for.
        let inside = sandbox_links(&ns);
        let eth0 = inside.iter().find(|l| l.name == "eth0").expect("eth0 in the sandbox");
        assert!(eth0.up && eth0.mtu == 1400 && eth0.kind.as_deref() == Some("veth"));
        assert!(inside.iter().any(|l| l.name == "lo" && l.up));
        let nsp = ns.display().to_string();
        let addrs = run_in_netns(&ns, &["ip", "-j", "addr", "show", "dev", "eth0"]);
        assert!(addrs.contains("\"address\":\"02:42:0a:7b:00:02\""), "{addrs}");
        assert!(addrs.contains("\"local\":\"10.123.0.2\",\"prefixlen\":24"), "{addrs}");
        assert!(addrs.contains("\"local\":\"fd00:123::2\",\"prefixlen\":64"), "{addrs}");
        let routes = run_in_netns(&ns, &["ip", "-j", "route", "show", "default"]);
        assert!(routes.contains("\"gateway\":\"10.123.0.1\",\"dev\":\"eth0\""), "{nsp}: {routes}");
        let routes6 = run_in_netns(&ns, &["ip", "-j", "-6", "route", "show", "default"]);
        assert!(routes6.contains("\"gateway\":\"fd00:123::1\",\"dev\":\"eth0\""), "{routes6}");

        // Reachability: a listener on the bridge address accepts; a closed port answers RST.
        let listener = TcpListener::bind("10.123.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        assert_eq!(connect_from(&ns, open), Ok(()));
        assert_eq!(listener.accept().unwrap().1.ip(), "10.123.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            connect_from(&ns, "10.123.0.1:9".parse().unwrap()),
            Err(IoKind::ConnectionRefused)
        );
        assert_eq!(
            connect_from(&ns, "[fd00:123::1]:9".parse().unwrap()),
            Err(IoKind::ConnectionRefused)
        );

        // Re-applying the sandbox's addresses and routes (restart reconcile) is a no-op.
        k.apply(&join_ops("vethc0ffee", "cove-t2", &ns)[1..]).await.unwrap();

        // Fast teardown: unmount the netns; the kernel reaps the pair, host end included.
        k.remove_netns(&ns).await.unwrap();
        assert!(!ns.exists());
        let gone = eventually(Duration::from_secs(2), || {
            let k = k.clone();
            async move { link(&k, "vethc0ffee").await.is_none() }
        })
        .await;
        assert!(gone, "host veth end still there 2 s after remove_netns");
        k.remove_netns(&ns).await.unwrap(); // missing is fine
    });
}

#[test]
fn failed_apply_rolls_back() {
    in_fresh_netns(|dir| async move {
        let k = Kernel::new().await.unwrap();
        let ns = dir.join("netns/sb2");
        k.create_netns(&ns).await.unwrap();

        // Host: the bridge made by the first op goes away when the veth op fails.
        let mut ops = bridge_ops("cove-t3");
        ops.push(veth_op("vethdead01", "no-such-bridge", &ns));
        let e = k.apply(&ops).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().starts_with("create veth vethdead01 (master no-such-bridge)"), "{e}");
        assert!(e.to_string().ends_with("link no-such-bridge not found"), "{e}");
        assert!(link(&k, "cove-t3").await.is_none(), "bridge was rolled back");

        // Sandbox: an unreachable gateway fails the route; the veth pair is rolled back.
        k.apply(&bridge_ops("cove-t3")).await.unwrap();
        let mut ops = join_ops("vethdead02", "cove-t3", &ns);
        ops.truncate(5);
        ops.push(Op::AddRoute {
            netns: Netns::Path(ns.clone()),
            dst: "0.0.0.0/0".parse().unwrap(),
            gateway: Some("10.99.0.1".parse().unwrap()),
            link: "eth0".into(),
        });
        let e = k.apply(&ops).await.unwrap_err();
        assert!(e.to_string().starts_with("add route 0.0.0.0/0 via 10.99.0.1 dev eth0"), "{e}");
        assert!(link(&k, "vethdead02").await.is_none(), "host end was rolled back");
        let inside = sandbox_links(&ns);
        assert!(inside.iter().all(|l| l.name != "eth0"), "peer went with the pair: {inside:?}");
        assert!(link(&k, "cove-t3").await.is_some(), "the earlier apply is untouched");
        k.remove_netns(&ns).await.unwrap();
    });
}

#[test]
fn teardown_is_idempotent() {
    in_fresh_netns(|dir| async move {
        let k = Kernel::new().await.unwrap();
        let ns = dir.join("netns/sb3");
        k.apply(&bridge_ops("cove-t4")).await.unwrap();
        k.create_netns(&ns).await.unwrap();
        k.apply(&join_ops("vethfeed01", "cove-t4", &ns)).await.unwrap();

        let sb = Netns::Path(ns.clone());
        let teardown = vec![
            Op::DelAddress {
                netns: sb.clone(),
                link: "eth0".into(),
                addr: "10.123.0.2/24".parse().unwrap(),
            },
            Op::DeleteLink { netns: sb, name: "eth0".into() },
            Op::DelAddress {
                netns: Netns::Host,
                link: "cove-t4".into(),
                addr: "10.123.0.1/24".parse().unwrap(),
            },
            Op::DeleteLink { netns: Netns::Host, name: "cove-t4".into() },
        ];
        assert!(k.teardown(&teardown).await.is_empty());
        assert!(link(&k, "vethfeed01").await.is_none(), "deleting eth0 deletes the pair");
        assert!(link(&k, "cove-t4").await.is_none());
        // Twice: everything is already gone, which is success.
        assert!(k.teardown(&teardown).await.is_empty());
        // With the sandbox netns gone too.
        k.remove_netns(&ns).await.unwrap();
        let errors = k.teardown(&teardown).await;
        assert!(errors.is_empty(), "{errors:?}");

        // A real error is reported, and the other ops still run.
        k.apply(&bridge_ops("cove-t4")).await.unwrap();
        let bad = vec![
            Op::Sysctl { netns: Netns::Host, key: "../etc/hostname".into(), value: "x".into() },
            Op::DeleteLink { netns: Netns::Host, name: "cove-t4".into() },
        ];
        let errors = k.teardown(&bad).await;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(link(&k, "cove-t4").await.is_none(), "teardown kept going past the failure");
    });
}

#[test]
fn netns_lifecycle_and_sysctl_isolation() {
    in_fresh_netns(|dir| async move {
        let k = Kernel::new().await.unwrap();
        let ns: PathBuf = dir.join("deep/er/netns/sb4");
        k.create_netns(&ns).await.unwrap();
        let e = k.create_netns(&ns).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

        // A sysctl in the sandbox changes the sandbox's value only.
        let key = "net/ipv4/ip_forward";
        let host_before = read_sysctl(key);
        let want = if host_before == "1" { "0" } else { "1" };
        k.apply(&[Op::Sysctl {
            netns: Netns::Path(ns.clone()),
            key: key.into(),
            value: want.into(),
        }])
        .await
        .unwrap();
        assert_eq!(in_netns(&ns, move || read_sysctl(key)), want);
        assert_eq!(read_sysctl(key), host_before);

        // Remove, then re-create at the same path: ops reach the new netns, not a stale socket.
        k.remove_netns(&ns).await.unwrap();
        k.create_netns(&ns).await.unwrap();
        k.apply(&[Op::Sysctl {
            netns: Netns::Path(ns.clone()),
            key: key.into(),
            value: want.into(),
        }])
        .await
        .unwrap();
        k.apply(&[Op::SetUp { netns: Netns::Path(ns.clone()), link: "lo".into() }]).await.unwrap();
        let inside = sandbox_links(&ns);
        assert_eq!(inside.len(), 1, "{inside:?}");

        // A stale plain file (left by a crash) is reused.
        k.remove_netns(&ns).await.unwrap();
        std::fs::write(&ns, b"").unwrap();
        let e = k
            .apply(&[Op::SetUp { netns: Netns::Path(ns.clone()), link: "lo".into() }])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        k.create_netns(&ns).await.unwrap();
        k.remove_netns(&ns).await.unwrap();

        // Ops on a missing netns are not-found.
        let e = k
            .apply(&[Op::SetUp { netns: Netns::Path(ns.clone()), link: "lo".into() }])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    });
}

#[test]
fn nft_session_applies_and_reports_errors() {
    in_fresh_netns(|_dir| async {
        cove_kernel::nft::apply("table inet sess { set s { type ipv4_addr; }; }\n").await.unwrap();
        let mut s = cove_kernel::nft::NftSession::spawn().unwrap();
        s.run("add element inet sess s { 192.0.2.1 }").await.unwrap();
        let err = s.run("add element inet sess nosuch { 192.0.2.2 }").await.unwrap_err();
        assert!(err.to_string().contains("No such file or directory"), "{err}");
        // The session goes on after an error, and each transaction sees only its own errors.
        s.run("add element inet sess s { 192.0.2.3 }").await.unwrap();
        assert!(s.alive());
        // Spawned from this thread, nft runs in the test's netns.
        let out = std::process::Command::new("nft")
            .args(["list", "set", "inet", "sess", "s"])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(listed.contains("192.0.2.1") && listed.contains("192.0.2.3"), "{listed}");
        assert!(!listed.contains("192.0.2.2"), "{listed}");
    });
}

/// Element changes of every kind a start or stop writes, in Cove's own tables: from one
/// network to two containers with published ports of every kind and a link, then one
/// container, one port and the link removed. The networks' elements cancel out, so both
/// deltas are hash sets only (the netlink path).
fn netlink_steps() -> (FirewallModel, Vec<ElementDelta>) {
    let base = FirewallModel {
        networks: vec![NetworkRules {
            bridge: "br-test".into(),
            subnets4: vec!["10.1.0.0/24".parse().unwrap()],
            subnets6: vec![],
            internal: false,
            icc: false,
            masquerade: true,
        }],
        ..FirewallModel::default()
    };
    let ep = |port: &str, host: u8, v6: bool| EndpointRules {
        bridge: "br-test".into(),
        host_ifname: port.into(),
        mac: MacAddr([2, 0x42, 10, 1, 0, host]),
        ipv4: Some(std::net::Ipv4Addr::new(10, 1, 0, host)),
        ipv6: v6.then(|| format!("2001:db8:1::{host}").parse().unwrap()),
    };
    let port = |proto, host_ip: Option<&str>, host_port, ctr: &str, container_port| PublishedPort {
        proto,
        host_ip: host_ip.map(|h| h.parse().unwrap()),
        host_port,
        container_ip: ctr.parse().unwrap(),
        container_port,
        bridge: "br-test".into(),
    };
    let mut started = base.clone();
    started.endpoints = vec![ep("cv1", 2, true), ep("cv2", 3, false)];
    started.published = vec![
        port(Proto::Tcp, None, 8080, "10.1.0.2", 80),
        port(Proto::Udp, None, 5353, "10.1.0.3", 53),
        port(Proto::Tcp, Some("127.0.0.1"), 8081, "10.1.0.2", 80),
        port(Proto::Tcp, None, 8443, "2001:db8:1::2", 443),
        port(Proto::Udp, Some("::1"), 8053, "2001:db8:1::2", 53),
    ];
    started.links =
        vec![LinkRule { from: "cv2".into(), to: "cv1".into(), proto: Proto::Tcp, port: 80 }];
    let mut stopped = started.clone();
    stopped.endpoints.truncate(1);
    stopped.published.retain(|p| p.host_port != 5353);
    stopped.links.clear();
    let steps = [(&base, &started), (&started, &stopped)]
        .map(|(b, a)| cove_firewall::element_delta(b, a).expect("elements only"));
    (base, steps.into())
}

/// Cove's tables (one network) written, then the steps applied over netlink or by `nft`; the
/// ruleset listed.
fn listed_after(netlink: bool) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    in_fresh_netns(move |_dir| async move {
        let (base, steps) = netlink_steps();
        cove_kernel::nft::apply(&cove_firewall::render(&base)).await.unwrap();
        let writer = cove_kernel::nfnl::ElementWriter::spawn().unwrap();
        let mut foreign =
            cove_kernel::nft::watch_foreign_changes(&["inet cove", "bridge cove"]).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await; // the monitor is listening
        for step in &steps {
            if netlink {
                writer.apply(step.to_netlink().expect("encodable")).await.unwrap();
            } else {
                cove_kernel::nft::apply(&step.render_text()).await.unwrap();
            }
        }
        // A batch with one bad element (a port that is not published) changes nothing at all.
        let mut with_cv9 = base.clone();
        with_cv9.endpoints = vec![EndpointRules {
            bridge: "br-test".into(),
            host_ifname: "cv9".into(),
            mac: MacAddr([2, 0x42, 10, 1, 0, 9]),
            ipv4: None,
            ipv6: None,
        }];
        let mut with_9999 = base.clone();
        with_9999.published = vec![PublishedPort {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: 9999,
            container_ip: "10.1.0.9".parse().unwrap(),
            container_port: 80,
            bridge: "br-test".into(),
        }];
        let bad: ElementDelta = [(&base, &with_cv9), (&with_9999, &base)]
            .into_iter()
            .map(|(b, a)| cove_firewall::element_delta(b, a).unwrap())
            .collect();
        if netlink {
            let e = writer.apply(bad.to_netlink().unwrap()).await.unwrap_err();
            assert!(e.to_string().contains("No such file or directory"), "{e}");
        } else {
            cove_kernel::nft::apply(&bad.render_text()).await.unwrap_err();
        }
        let out = std::process::Command::new("nft").args(["list", "ruleset"]).output().unwrap();
        tx.send(String::from_utf8_lossy(&out.stdout).into_owned()).unwrap();
        // Our own writes (netlink thread, nft children) are not taken for tampering; a
        // change by another process is (the positive control, proving the watch sees).
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(foreign.try_recv().is_err(), "own writes reported as foreign");
        let other = std::process::Command::new("nft")
            .args(["add", "element", "bridge", "cove", "icc_off", "{ \"cv7\" }"])
            .status()
            .unwrap();
        assert!(other.success());
        let seen = tokio::time::timeout(Duration::from_secs(5), foreign.recv()).await;
        assert!(matches!(seen, Ok(Some(()))), "a foreign change was not noticed");
    });
    rx.recv().unwrap()
}

#[test]
fn netlink_element_batches_do_what_nft_does() {
    let by_nft = listed_after(false);
    let by_netlink = listed_after(true);
    assert!(by_nft.contains("tcp . 8080 : 10.1.0.2 . 80"), "{by_nft}");
    assert!(by_nft.contains("0x20010db8000100000000000000000002"), "{by_nft}");
    assert!(!by_nft.contains("cv9") && !by_nft.contains("5353"), "{by_nft}");
    assert_eq!(by_netlink, by_nft);
}

#[test]
fn removals_of_owned_links_are_signalled_and_condemned_ones_are_not() {
    if !support::is_root() {
        eprintln!("SKIPPED: removals_of_owned_links_are_signalled: needs root");
        return;
    }
    in_fresh_netns(|dir| async move {
        let k = Kernel::new().await.unwrap();
        let mut removals = k.owned_link_removals().unwrap();
        k.apply(&bridge_ops("cove-ev1")[..1]).await.unwrap();
        k.apply(&bridge_ops("cove-ev2")[..1]).await.unwrap();
        // A sandbox torn down takes its veth's host end along: no signal (the diff could
        // not re-create it anyway).
        let ns = dir.join("netns/sb-ev");
        k.create_netns(&ns).await.unwrap();
        k.apply(&[veth_op("vethev0001", "cove-ev2", &ns)]).await.unwrap();
        k.remove_netns(&ns).await.unwrap();
        // The kernel reaps a namespace's links asynchronously, after RCU grace periods that
        // stretch on a loaded machine.
        let gone = eventually(Duration::from_secs(15), || {
            let k = k.clone();
            async move { link(&k, "vethev0001").await.is_none() }
        })
        .await;
        assert!(gone, "the veth outlived its sandbox by 15 s");
        // Cove's own deletion: condemned first, then reaped. No signal.
        k.apply(&[Op::Condemn { link: "cove-ev1".into() }]).await.unwrap();
        k.reap_condemned().await.unwrap();
        assert!(link(&k, "cove-ev1").await.is_none());
        let quiet = tokio::time::timeout(Duration::from_millis(300), removals.recv()).await;
        assert!(quiet.is_err(), "a condemned link's deletion was signalled");
        // Someone else's: a signal.
        // This thread's netns (the test's own), not the process's (the real host's).
        let own = PathBuf::from(format!("/proc/self/task/{}/ns/net", nix::unistd::gettid()));
        assert_eq!(
            std::fs::metadata(&own).map(|m| std::os::linux::fs::MetadataExt::st_ino(&m)).unwrap(),
            thread_netns_inode()
        );
        run_in_netns(&own, &["ip", "link", "del", "cove-ev2"]);
        let got = tokio::time::timeout(Duration::from_secs(5), removals.recv()).await;
        assert_eq!(got, Ok(Some(())), "the removal by hand was not signalled");
    });
}

#[test]
fn concurrent_dumps_on_one_connection_all_succeed() {
    if !support::is_root() {
        eprintln!("SKIPPED: concurrent_dumps_on_one_connection_all_succeed: needs root");
        return;
    }
    in_fresh_netns(|_dir| async move {
        let k = Kernel::new().await.unwrap();
        // Enough links that one dump takes a while, so the others arrive while it runs
        // (the kernel allows one dump at a time per netlink socket: EBUSY otherwise).
        for i in 0..200 {
            k.apply(&bridge_ops(&format!("cove-d{i}"))[..1]).await.unwrap();
        }
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let k = k.clone();
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        k.links().await.map(|l| l.len())
                    } else {
                        k.route_prefixes().await.map(|r| r.len())
                    }
                })
            })
            .collect();
        for t in tasks {
            let got = t.await.unwrap();
            assert!(got.is_ok(), "a dump failed while another ran: {got:?}");
        }
    });
}

#[test]
fn a_dump_given_up_half_way_does_not_spoil_the_next() {
    in_fresh_netns(|_dir| async {
        let k = Kernel::new().await.unwrap();
        // Enough links that a dump of them spans many datagrams.
        let ops: Vec<Op> = (0..150)
            .map(|i| Op::CreateBridge {
                name: format!("cove-d{i}"),
                group: cove_drivers::plan::OWNED_LINK_GROUP,
                mtu: 1400,
                mac: MacAddr([2, 0x42, 1, 2, 3, i as u8]),
            })
            .collect();
        k.apply(&ops).await.unwrap();
        let all = k.links().await.unwrap();
        assert_eq!(all.len(), 151, "lo and the bridges");
        // Give up on dumps at different points (before any reply, half-way), then dump in
        // full: the abandoned replies are drained, not taken for the new dump's.
        for micros in [0, 20, 100, 500, 2000] {
            let _ = tokio::time::timeout(Duration::from_micros(micros), k.links()).await;
            assert_eq!(k.links().await.unwrap(), all, "after giving up at {micros} µs");
            assert_eq!(k.observe_host(&[]).await.unwrap().links.len(), 151);
        }
    });
}
