//! Leak-audit snapshots: normalised views of a fake host's links, addresses, routes,
//! rules, nftables ruleset, mounts, bind-mounted netns and processes.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::procs::Mount;

/// What a fake host holds at one moment, each part a sorted list of normalised lines
/// (volatile details such as ifindexes, counters, timers, IPv6 link-local addresses and
/// routes left out), so that two snapshots of an unchanged host are equal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `name [kind=K] [master=M]` per link.
    pub links: Vec<String>,
    /// `name mtu=M id=VNI local=A [remote=A|group=A] link=DEV port=P learning=B ...` per
    /// VXLAN link: its whole configuration, so that a VXLAN link left behind, or one whose
    /// VNI, underlay device, port or MTU changed, shows in the diff.
    pub vxlan: Vec<String>,
    /// `dev address/prefix` per address (IPv6 link-local left out).
    pub addrs: Vec<String>,
    /// One line per route of every table, both families (IPv6 link-local and multicast left out).
    pub routes: Vec<String>,
    /// `ip rule` of both families.
    pub rules: Vec<String>,
    /// Permanent neighbour (ARP/NDP) entries.
    pub neigh: Vec<String>,
    /// Static and permanent bridge/VXLAN FDB entries: unicast ones, and VXLAN entries of any
    /// MAC that name a remote (`dst`); learned entries and the kernel's own multicast ones
    /// are left out.
    pub fdb: Vec<String>,
    /// `nft list ruleset`, one line per statement, prefixed with its table/chain/set path,
    /// counters and expiry timers removed.
    pub nft: Vec<String>,
    /// `mountpoint fstype source` of every mount in the fake host's mount namespace except
    /// nsfs (the fake host's temp dir shown as `$D`, its tag as `$TAG`).
    pub mounts: Vec<String>,
    /// Network namespaces bind-mounted (nsfs) in the fake host's mount namespace.
    pub netns: Vec<String>,
    /// Processes of the fake host other than its holder and the daemon (shims, runc,
    /// containers, leftovers): `comm pid=N [state]: cmdline`.
    pub procs: Vec<String>,
}

impl Snapshot {
    fn sections(&self) -> [(&'static str, &Vec<String>); 11] {
        [
            ("link", &self.links),
            ("vxlan", &self.vxlan),
            ("addr", &self.addrs),
            ("route", &self.routes),
            ("rule", &self.rules),
            ("neigh", &self.neigh),
            ("fdb", &self.fdb),
            ("nft", &self.nft),
            ("mount", &self.mounts),
            ("netns", &self.netns),
            ("proc", &self.procs),
        ]
    }

    /// What changed from `self` (the earlier snapshot) to `later`: `+ section: item` for each
    /// item only in `later`, `- section: item` for each item only in `self` (duplicates
    /// counted).
    pub fn diff(&self, later: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for ((name, before), (_, after)) in self.sections().into_iter().zip(later.sections()) {
            let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
            for i in before {
                *counts.entry(i).or_default() -= 1;
            }
            for i in after {
                *counts.entry(i).or_default() += 1;
            }
            for (item, n) in counts {
                let sign = if n > 0 { '+' } else { '-' };
                for _ in 0..n.unsigned_abs() {
                    out.push(format!("{sign} {name}: {item}"));
                }
            }
        }
        out
    }
}

/// Sort in place and return.
pub(crate) fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

fn is_link_local_v6(addr: &str) -> bool {
    let first = addr.split([':', '/']).next().unwrap_or_default();
    u16::from_str_radix(first, 16).is_ok_and(|h| h & 0xffc0 == 0xfe80) && addr.contains(':')
}

/// Links and addresses from `ip -j -d addr show`.
pub(crate) fn links_and_addrs(json: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("ip -j -d addr: {e}"))?;
    let (mut links, mut addrs) = (Vec::new(), Vec::new());
    for l in v.as_array().into_iter().flatten() {
        let name = l.get("ifname").map(s).unwrap_or_default();
        let mut line = name.clone();
        if let Some(k) = l.pointer("/linkinfo/info_kind") {
            line.push_str(&format!(" kind={}", s(k)));
        }
        if let Some(m) = l.get("master") {
            line.push_str(&format!(" master={}", s(m)));
        }
        links.push(line);
        for a in l.get("addr_info").and_then(Value::as_array).into_iter().flatten() {
            let Some(local) = a.get("local").map(s) else { continue };
            if is_link_local_v6(&local) {
                continue;
            }
            let plen = a.get("prefixlen").map(s).unwrap_or_default();
            addrs.push(format!("{name} {local}/{plen}"));
        }
    }
    Ok((sorted(links), sorted(addrs)))
}

/// VXLAN links from `ip -j -d addr show` (or `link show`): name, MTU and every attribute
/// of the kind's `info_data`.
pub(crate) fn vxlan(json: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("ip -j -d addr: {e}"))?;
    let mut out = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        if l.pointer("/linkinfo/info_kind").and_then(Value::as_str) != Some("vxlan") {
            continue;
        }
        let name = l.get("ifname").map(s).unwrap_or_default();
        let mtu = l.get("mtu").map(s).unwrap_or_default();
        let data = l.pointer("/linkinfo/info_data").and_then(Value::as_object);
        let first = ["id", "local", "remote", "group", "link", "port", "learning", "proxy"];
        let attrs = data.map(|d| kv(d, &first, &[]));
        out.push(format!("{name} mtu={mtu} {}", attrs.unwrap_or_default()));
    }
    Ok(sorted(out))
}

/// `key=value` of an object: `first` keys in that order, then the rest sorted; keys in
/// `skip`, nulls and empty arrays left out.
fn kv(obj: &Map<String, Value>, first: &[&str], skip: &[&str]) -> String {
    let mut parts = Vec::new();
    let mut push = |k: &str, v: &Value| {
        if skip.contains(&k) || v.is_null() || v.as_array().is_some_and(Vec::is_empty) {
            return;
        }
        parts.push(format!("{k}={}", s(v)));
    };
    for k in first {
        if let Some(v) = obj.get(*k) {
            push(k, v);
        }
    }
    for (k, v) in obj {
        if !first.contains(&k.as_str()) {
            push(k, v);
        }
    }
    parts.join(" ")
}

/// Routes of every table and both families from `ip -j route show table all`.
pub(crate) fn routes(json: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("ip -j route: {e}"))?;
    let mut out = Vec::new();
    for r in v.as_array().into_iter().flatten() {
        let Some(obj) = r.as_object() else { continue };
        let dst = obj.get("dst").map(s).unwrap_or_default();
        if is_link_local_v6(&dst) || dst == "ff00::/8" {
            continue;
        }
        // Subnet-router anycast routes are the kernel's own, present while IPv6 forwarding
        // is on (a documented sysctl the daemon sets), not objects anyone created.
        if obj.get("type").map(s) == Some("anycast".to_string()) {
            continue;
        }
        let mut obj = obj.clone();
        obj.entry("table").or_insert_with(|| "main".into());
        obj.entry("type").or_insert_with(|| "unicast".into());
        // A bridge's carrier follows whether it has ports, so "linkdown" comes and goes
        // with containers: state, not a leaked object.
        if let Some(Value::Array(flags)) = obj.get_mut("flags") {
            flags.retain(|f| f != "linkdown");
            if flags.is_empty() {
                obj.remove("flags");
            }
        }
        out.push(kv(
            &obj,
            &["table", "type", "dst", "gateway", "dev", "protocol", "scope", "prefsrc", "metric"],
            &["expires", "cacheinfo"],
        ));
    }
    Ok(sorted(out))
}

/// Policy rules from `ip -j [-6] rule show`, tagged with `family`.
pub(crate) fn rules(json: &str, family: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("ip -j rule: {e}"))?;
    Ok(sorted(
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(|o| format!("{family} {}", kv(o, &["priority"], &[])))
            .collect(),
    ))
}

/// Permanent neighbour entries from `ip -j neigh show nud permanent`.
pub(crate) fn neigh(json: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("ip -j neigh: {e}"))?;
    Ok(sorted(
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .map(|o| kv(o, &["dev", "dst", "lladdr"], &[]))
            .collect(),
    ))
}

/// Static and permanent FDB entries from `bridge -j fdb show`: unicast MACs, and any MAC
/// with a remote `dst` (VXLAN).
pub(crate) fn fdb(json: &str) -> Result<Vec<String>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("bridge -j fdb: {e}"))?;
    let multicast = |mac: &str| {
        u8::from_str_radix(mac.get(..2).unwrap_or("01"), 16).map_or(true, |b| b & 1 == 1)
    };
    Ok(sorted(
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
            .filter(|o| {
                o.contains_key("dst") || !o.get("mac").map(s).is_some_and(|m| multicast(&m))
            })
            .filter(|o| o.get("state").map(s).is_some_and(|st| st == "permanent" || st == "static"))
            .map(|o| kv(o, &["ifname", "mac", "dst", "vlan", "master"], &["updated", "used"]))
            .collect(),
    ))
}

/// Remove volatile numbers: `packets N`, `bytes N` (counters) and `expires T` (timers).
fn strip_volatile(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    'outer: while let Some(c) = rest.chars().next() {
        if out.is_empty() || out.ends_with(' ') {
            for key in ["packets ", "bytes ", "expires "] {
                let Some(after) = rest.strip_prefix(key) else { continue };
                let n = after.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(after.len());
                if n > 0 && after.as_bytes()[0].is_ascii_digit() {
                    rest = &after[n..];
                    while out.ends_with(' ') {
                        out.pop();
                    }
                    continue 'outer;
                }
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `nft list ruleset` as `path :: statement` lines (a block header is an item of its own).
pub(crate) fn nft_items(text: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for raw in text.lines() {
        let line = strip_volatile(raw.trim());
        if line.is_empty() {
            continue;
        }
        if line == "}" {
            stack.pop();
            continue;
        }
        if let Some(head) = line.strip_suffix('{') {
            stack.push(head.trim().to_string());
            out.push(stack.join(" / "));
            continue;
        }
        out.push(format!("{} :: {line}", stack.join(" / ")));
    }
    sorted(out)
}

/// Mount and netns items from the fake host's mountinfo, with `dir` shown as `$D` and
/// `tag` as `$TAG`.
pub(crate) fn mount_items(mounts: &[Mount], dir: &str, tag: &str) -> (Vec<String>, Vec<String>) {
    let norm = |p: &str| p.replace(dir, "$D");
    let (mut ms, mut ns) = (Vec::new(), Vec::new());
    let real = crate::procs::real_host_nsfs();
    for m in mounts {
        if m.fstype == "nsfs" && real.contains(&m.root) {
            // The real host's own (`ip netns add` there): not the fake host's business.
            continue;
        }
        if m.fstype == "nsfs" {
            let kind = m.root.split(':').next().unwrap_or_default();
            ns.push(format!("{} ({kind})", norm(&m.mount_point)));
        } else {
            let source = if m.source == tag { "$TAG".to_string() } else { norm(&m.source) };
            ms.push(format!("{} {} {source}", norm(&m.mount_point), m.fstype));
        }
    }
    (sorted(ms), sorted(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_counters_and_timers() {
        assert_eq!(
            strip_volatile(r#"iifname "eth-lan" counter packets 12 bytes 3400 accept"#),
            r#"iifname "eth-lan" counter accept"#
        );
        assert_eq!(
            strip_volatile("10.0.0.1 counter packets 0 bytes 0 expires 59s979ms, 10.0.0.2"),
            "10.0.0.1 counter, 10.0.0.2"
        );
        assert_eq!(strip_volatile("comment \"packets x\""), "comment \"packets x\"");
    }

    #[test]
    fn nft_paths() {
        let text = "table inet probe {\n\tcounter c {\n\t\tpackets 3 bytes 4\n\t}\n\tchain in {\n\
                    \t\ttype filter hook prerouting priority -400; policy accept;\n\
                    \t\tiifname \"eth-lan\" counter packets 5 bytes 6\n\t}\n}\n";
        let items = nft_items(text);
        assert!(items.contains(&"table inet probe".to_string()), "{items:?}");
        assert!(items
            .contains(&"table inet probe / chain in :: iifname \"eth-lan\" counter".to_string()));
        assert!(items.contains(&"table inet probe / counter c".to_string()));
        assert!(items.iter().all(|i| !i.contains("packets")), "{items:?}");
    }

    #[test]
    fn diff_lists_added_and_removed() {
        let a = Snapshot { links: vec!["lo".into(), "x kind=veth".into()], ..Default::default() };
        let b = Snapshot { links: vec!["lo".into(), "y kind=veth".into()], ..Default::default() };
        assert_eq!(a.diff(&b), vec!["- link: x kind=veth", "+ link: y kind=veth"]);
        assert!(a.diff(&a).is_empty());
    }

    #[test]
    fn fdb_keeps_static_unicast_only() {
        let json = r#"[{"mac":"42:9e:aa:df:14:2d","ifname":"vb","flags":[],"master":"br0","state":"permanent"},
            {"mac":"33:33:00:00:00:01","ifname":"vb","flags":["self"],"state":"permanent"},
            {"mac":"02:00:00:00:00:05","ifname":"vb","master":"br0","state":""},
            {"mac":"00:00:00:00:00:00","ifname":"vx0","dst":"198.51.100.9","flags":["self"],"state":"permanent"}]"#;
        assert_eq!(
            fdb(json).unwrap(),
            [
                "ifname=vb mac=42:9e:aa:df:14:2d master=br0 state=permanent",
                "ifname=vx0 mac=00:00:00:00:00:00 dst=198.51.100.9 flags=[\"self\"] state=permanent",
            ]
        );
    }

    #[test]
    fn vxlan_links_show_their_configuration() {
        let json = r#"[{"ifname":"lo","mtu":65536},
            {"ifname":"vx0","mtu":1450,"linkinfo":{"info_kind":"vxlan","info_data":{"id":42,
            "local":"203.0.113.5","link":"eth0","port_range":{"low":0,"high":0},"port":4789,
            "learning":false,"ttl":0}}}]"#;
        assert_eq!(
            vxlan(json).unwrap(),
            [
                r#"vx0 mtu=1450 id=42 local=203.0.113.5 link=eth0 port=4789 learning=false port_range={"high":0,"low":0} ttl=0"#
            ]
        );
        let fdb_json = r#"[{"mac":"ff:ff:ff:ff:ff:ff","ifname":"vx0","dst":"203.0.113.7","flags":["self"],"state":"permanent"},
            {"mac":"02:00:00:00:00:09","ifname":"vx0","dst":"203.0.113.8","flags":["self"],"state":""}]"#;
        assert_eq!(
            fdb(fdb_json).unwrap(),
            ["ifname=vx0 mac=ff:ff:ff:ff:ff:ff dst=203.0.113.7 flags=[\"self\"] state=permanent"]
        );
    }

    #[test]
    fn link_local_filter() {
        assert!(is_link_local_v6("fe80::1"));
        assert!(is_link_local_v6("fe80::/64"));
        assert!(is_link_local_v6("febf::1"));
        assert!(!is_link_local_v6("fec0::1"));
        assert!(!is_link_local_v6("2001:db8::1"));
        assert!(!is_link_local_v6("fe80"));
    }
}
