//! Legacy links (`--link name[:alias]`), as Docker has them.
//!
//! On the default `bridge` network (which has no embedded DNS) a link gives the linking
//! container an `/etc/hosts` line `<ip>\t<alias> <hostname> [<name>]` for the linked
//! container and Docker's environment variables (`ALIAS_PORT_80_TCP_ADDR` and friends).
//! On user-defined networks a link is a DNS alias seen by the linking container only (see
//! `dns.rs`). The linked container must exist at create and run at start; when it starts
//! again (with a new address) the hosts files and aliases of its linkers are rewritten.

use std::net::IpAddr;

use cove_model::{ContainerRecord, EndpointRecord, Error, NetworkMode, PortSpec, Result, Status};
use tracing::warn;

use crate::state::State;
use crate::Controller;

/// Splits `name[:alias]` (leading `/` ignored on both, as Docker's `ParseLink`).
pub(crate) fn parse(link: &str) -> Result<(String, String)> {
    let (name, alias) = match link.split_once(':') {
        Some((n, a)) => (n, a),
        None => (link, link),
    };
    let name = name.trim_start_matches('/');
    // Docker stores links as `/child:/linker/alias`: the alias is the last path element.
    let alias = alias.rsplit('/').next().unwrap_or(alias);
    if name.is_empty() || alias.is_empty() {
        return Err(Error::invalid(format!("invalid link \"{link}\": expected name[:alias]")));
    }
    if alias.contains(char::is_whitespace) || !alias.is_ascii() {
        return Err(Error::invalid(format!("invalid link alias \"{alias}\"")));
    }
    Ok((name.to_string(), alias.to_string()))
}

/// Every well-formed link of a record (they were validated at create).
pub(crate) fn parse_all(links: &[String]) -> Vec<(String, String)> {
    links.iter().filter_map(|l| parse(l).ok()).collect()
}

/// Whether a container has links of either kind: `--link` at create, or
/// `network connect --link` on a user-defined network.
pub(crate) fn has_links(c: &ContainerRecord) -> bool {
    !c.host_config.links.is_empty() || c.networks.iter().any(|(_, s)| !s.links.is_empty())
}

/// Every link of a container, both kinds (see [`has_links`]).
pub(crate) fn all_links(c: &ContainerRecord) -> Vec<(String, String)> {
    let mut out = parse_all(&c.host_config.links);
    for (_, s) in &c.networks {
        out.extend(parse_all(&s.links));
    }
    out
}

/// `--link` at create: every target must exist, the network mode must allow links. Returns
/// the links as Docker stores them: `/<name>:/<linker>/<alias>`.
pub(crate) fn check_at_create(
    st: &State,
    linker: &str,
    mode: &NetworkMode,
    links: &[String],
) -> Result<Vec<String>> {
    if links.is_empty() {
        return Ok(vec![]);
    }
    match mode {
        NetworkMode::Host => {
            return Err(Error::invalid(
                "conflicting options: host type networking can't be used with links",
            ))
        }
        NetworkMode::Container(_) => {
            return Err(Error::invalid(
                "conflicting options: container type network can't be used with links",
            ))
        }
        NetworkMode::None => {
            return Err(Error::invalid("conflicting options: links need a network (not none)"))
        }
        NetworkMode::Sandbox => {}
    }
    let mut out = vec![];
    for l in links {
        let (name, alias) = parse(l)?;
        let child = st.container(&name).map_err(|e| {
            Error::not_found(format!("could not get container for {name}: {}", e.message))
        })?;
        if child.host_config.network_mode == NetworkMode::Host {
            return Err(Error::invalid(format!(
                "cannot link to {name}: it uses host networking, which can't be used with links"
            )));
        }
        out.push(format!("/{}:/{linker}/{alias}", child.name));
    }
    Ok(out)
}

/// The default bridge's network id.
fn default_network(st: &State) -> Option<&str> {
    st.networks
        .values()
        .find(|n| n.builtin && n.name == cove_model::DEFAULT_NETWORK)
        .map(|n| n.id.as_str())
}

/// Whether the container is on the default bridge (where links are hosts entries).
fn on_default_network(st: &State, c: &ContainerRecord) -> bool {
    default_network(st).is_some_and(|b| c.networks.iter().any(|(id, _)| id == b))
}

/// The linked container's endpoint on the default bridge.
fn default_endpoint<'a>(st: &'a State, child: &ContainerRecord) -> Option<&'a EndpointRecord> {
    let b = default_network(st)?;
    st.endpoints_of_container(&child.id).into_iter().find(|e| e.network_id == b)
}

/// Docker's link environment for one link (moby `daemon/links`: `Link.ToEnv`).
fn env_of(linker: &str, alias: &str, ip: IpAddr, child: &ContainerRecord) -> Vec<String> {
    let upper = alias.to_uppercase().replace('-', "_");
    let mut ports: Vec<(u16, String)> = child
        .config
        .exposed_ports
        .iter()
        .filter_map(|k| {
            let PortSpec { port, proto } = k.parse().ok()?;
            Some((port, proto.to_string()))
        })
        .collect();
    // By number, tcp first for equal numbers, as Docker sorts them.
    ports.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| (a.1 != "tcp").cmp(&(b.1 != "tcp"))));
    ports.dedup();
    let mut env = vec![];
    if let Some((p, proto)) = ports.first() {
        env.push(format!("{upper}_PORT={proto}://{ip}:{p}"));
    }
    let range_env = |env: &mut Vec<String>, start: &(u16, String), end: &(u16, String)| {
        if start.0 == end.0 {
            return;
        }
        let prefix = format!("{upper}_PORT_{}_{}", start.0, start.1.to_uppercase());
        env.push(format!("{prefix}_START={}://{ip}:{}", start.1, start.0));
        env.push(format!("{prefix}_PORT_START={}", start.0));
        env.push(format!("{prefix}_END={}://{ip}:{}", end.1, end.0));
        env.push(format!("{prefix}_PORT_END={}", end.0));
    };
    let mut range: Option<((u16, String), (u16, String))> = None;
    for (p, proto) in &ports {
        let prefix = format!("{upper}_PORT_{p}_{}", proto.to_uppercase());
        env.push(format!("{prefix}={proto}://{ip}:{p}"));
        env.push(format!("{prefix}_ADDR={ip}"));
        env.push(format!("{prefix}_PORT={p}"));
        env.push(format!("{prefix}_PROTO={proto}"));
        range = match range {
            Some((s, e)) if e.0.checked_add(1) == Some(*p) && e.1 == *proto => {
                Some((s, (*p, proto.clone())))
            }
            Some((s, e)) => {
                range_env(&mut env, &s, &e);
                Some(((*p, proto.clone()), (*p, proto.clone())))
            }
            None => Some(((*p, proto.clone()), (*p, proto.clone()))),
        };
    }
    if let Some((s, e)) = range {
        range_env(&mut env, &s, &e);
    }
    env.push(format!("{upper}_NAME=/{linker}/{alias}"));
    for v in &child.config.env {
        let Some((name, val)) = v.split_once('=') else { continue };
        // Docker leaves these out: they come from the image build, not the service.
        if name == "HOME" || name == "PATH" {
            continue;
        }
        env.push(format!("{upper}_ENV_{name}={val}"));
    }
    env
}

/// The firewall openings of `c`'s links (as the linker): on the default bridge with icc
/// off (`--icc=false`), Docker's link rules let the linker reach each exposed port of the
/// linked container, and nothing else. Both must be running with an endpoint on the
/// default bridge. Pure.
pub(crate) fn firewall_links(
    st: &State,
    drivers: &cove_drivers::Registry,
    c: &ContainerRecord,
) -> Vec<cove_firewall::LinkRule> {
    if c.host_config.links.is_empty() || c.state.status != Status::Running {
        return vec![];
    }
    let Some(net) = default_network(st).and_then(|id| st.networks.get(id)) else { return vec![] };
    let icc = drivers.of(net).ok().and_then(|d| d.firewall(net, false)).is_none_or(|r| r.icc);
    if icc {
        return vec![];
    }
    let Some(from) = default_endpoint(st, c) else { return vec![] };
    let mut out = vec![];
    for (name, _) in parse_all(&c.host_config.links) {
        let Ok(child) = st.container(&name) else { continue };
        if child.state.status != Status::Running {
            continue;
        }
        let Some(to) = default_endpoint(st, child) else { continue };
        for key in &child.config.exposed_ports {
            let Ok(PortSpec { port, proto }) = key.parse() else { continue };
            let (Some(from), Some(to)) = (&from.host_ifname, &to.host_ifname) else { continue };
            out.push(cove_firewall::LinkRule { from: from.clone(), to: to.clone(), proto, port });
        }
    }
    out.sort_by(|a, b| (&a.to, a.proto, a.port).cmp(&(&b.to, b.proto, b.port)));
    out.dedup();
    out
}

/// The containers that link to any of `ids` (whose firewall openings name their ports).
pub(crate) fn linkers_of(st: &State, ids: &std::collections::BTreeSet<String>) -> Vec<String> {
    if ids.is_empty() {
        return vec![];
    }
    st.containers
        .values()
        .filter(|l| !l.host_config.links.is_empty())
        .filter(|l| {
            parse_all(&l.host_config.links)
                .iter()
                .any(|(name, _)| st.container(name).is_ok_and(|c| ids.contains(c.id.as_str())))
        })
        .map(|l| l.id.to_string())
        .collect()
}

impl Controller {
    /// At start: every linked container must exist and run, and (for a container on the
    /// default bridge) be on the default bridge too. Returns (alias, linked container).
    pub(crate) fn link_targets<'a>(
        st: &'a State,
        c: &ContainerRecord,
    ) -> Result<Vec<(String, &'a ContainerRecord)>> {
        let mut out = vec![];
        for (name, alias) in parse_all(&c.host_config.links) {
            let child = st.container(&name).map_err(|_| {
                Error::not_found(format!(
                    "Cannot link to /{name}: no such container (it was removed)"
                ))
            })?;
            if child.state.status != Status::Running {
                return Err(Error::conflict(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    child.name, c.name
                )));
            }
            if on_default_network(st, c) && default_endpoint(st, child).is_none() {
                return Err(Error::invalid(format!(
                    "Cannot link to /{}, as it does not belong to the default network",
                    child.name
                )));
            }
            out.push((alias, child));
        }
        Ok(out)
    }

    /// `/etc/hosts` lines of a default-bridge container's links: `<ip> <alias> <hostname>
    /// [<name>]`, IPv4 then IPv6, as Docker writes them. Links to containers that are gone
    /// or not on the bridge give nothing.
    pub(crate) fn link_hosts(st: &State, c: &ContainerRecord) -> Vec<(String, IpAddr)> {
        if !on_default_network(st, c) {
            return vec![];
        }
        let mut out = vec![];
        for (name, alias) in parse_all(&c.host_config.links) {
            let Ok(child) = st.container(&name) else { continue };
            let Some(ep) = default_endpoint(st, child) else { continue };
            let mut names = format!("{alias} {}", child.config.hostname);
            if alias != child.name {
                names.push(' ');
                names.push_str(&child.name);
            }
            let v4 = ep.ipv4.map(|a| IpAddr::V4(a.addr()));
            let v6 = ep.ipv6.map(|a| IpAddr::V6(a.addr()));
            out.extend([v4, v6].into_iter().flatten().map(|ip| (names.clone(), ip)));
        }
        out
    }

    /// The environment of a container about to start: link variables first (so the
    /// container's own `-e` values win), then its own.
    pub(crate) fn env_with_links(st: &State, c: &ContainerRecord) -> Vec<String> {
        let mut env = vec![];
        if on_default_network(st, c) {
            for (name, alias) in parse_all(&c.host_config.links) {
                let Ok(child) = st.container(&name) else { continue };
                let Some(ip) = default_endpoint(st, child).and_then(|e| e.ipv4) else { continue };
                env.extend(env_of(&c.name, &alias, IpAddr::V4(ip.addr()), child));
            }
        }
        let own: Vec<&str> =
            c.config.env.iter().map(|v| v.split_once('=').map_or(v.as_str(), |(k, _)| k)).collect();
        env.retain(|v| !own.contains(&v.split_once('=').map_or(v.as_str(), |(k, _)| k)));
        env.extend(c.config.env.iter().cloned());
        env
    }

    /// A container started (maybe with a new address): rewrite the hosts files and DNS
    /// aliases of the running containers that link to it.
    pub(crate) async fn refresh_linkers(&self, st: &State, child_id: &str) {
        let linkers: Vec<ContainerRecord> = st
            .containers
            .values()
            .filter(|l| l.state.status == Status::Running && l.id != child_id)
            .filter(|l| {
                all_links(l)
                    .iter()
                    .any(|(name, _)| st.container(name).is_ok_and(|c| c.id == child_id))
            })
            .cloned()
            .collect();
        for l in linkers {
            self.refresh_hosts(st, &l);
            if let Err(e) = self.dns_sync(st, &l).await {
                warn!(container = %l.name, error = %e, "could not update link aliases");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_links_like_docker() {
        assert_eq!(parse("db").unwrap(), ("db".into(), "db".into()));
        assert_eq!(parse("/db:/web/alias").unwrap(), ("db".into(), "alias".into()));
        assert_eq!(parse("db:d").unwrap(), ("db".into(), "d".into()));
        assert!(parse(":x").is_err());
        assert!(parse("db:").is_err());
    }

    #[test]
    fn link_env_has_ports_ranges_name_and_env() {
        let mut child = ContainerRecord {
            id: "c".repeat(64).parse().unwrap(),
            name: "db".into(),
            created: String::new(),
            config: Default::default(),
            host_config: Default::default(),
            networks: vec![],
            state: Default::default(),
        };
        child.config.exposed_ports = vec!["81/tcp".into(), "80/tcp".into(), "53/udp".into()];
        child.config.env = vec!["PATH=/bin".into(), "PASSWORD=x=y".into()];
        let env = env_of("web", "my-db", "172.17.0.2".parse().unwrap(), &child);
        for want in [
            "MY_DB_PORT=udp://172.17.0.2:53",
            "MY_DB_PORT_80_TCP=tcp://172.17.0.2:80",
            "MY_DB_PORT_80_TCP_ADDR=172.17.0.2",
            "MY_DB_PORT_80_TCP_PORT=80",
            "MY_DB_PORT_80_TCP_PROTO=tcp",
            "MY_DB_PORT_80_TCP_START=tcp://172.17.0.2:80",
            "MY_DB_PORT_80_TCP_PORT_END=81",
            "MY_DB_NAME=/web/my-db",
            "MY_DB_ENV_PASSWORD=x=y",
        ] {
            assert!(env.iter().any(|e| e == want), "{want} missing from {env:?}");
        }
        assert!(!env.iter().any(|e| e.starts_with("MY_DB_ENV_PATH")));
    }
}
