//! Container create: name, image, network mode and endpoints resolved and validated,
//! bundle written, record stored.

use cove_model::{
    ContainerId, ContainerRecord, ContainerState, EndpointSettings, Error, NetworkId, NetworkMode,
    Result,
};
use cove_runtime::{BundleNetwork, BundleSpec};
use tracing::info;

use crate::networks::check_endpoint_settings;
use crate::state::State;
use crate::{etc_files, ContainerCreate, Controller};

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "quiet", "sharp", "tender", "vivid", "witty",
];
const NAMES: &[&str] = &[
    "babbage", "cerf", "curie", "dijkstra", "hopper", "kahn", "lamport", "lovelace", "metcalfe",
    "perlman", "postel", "ritchie", "shannon", "thompson", "torvalds", "turing",
];

/// A Docker-style `adjective_name`, unique among existing containers.
fn generate_name(st: &State) -> String {
    loop {
        let a = ADJECTIVES[rand_index(ADJECTIVES.len())];
        let n = NAMES[rand_index(NAMES.len())];
        let name = format!("{a}_{n}");
        let name = if st.containers.values().any(|c| c.name == name) {
            format!("{name}{}", rand_index(100))
        } else {
            name
        };
        if !st.containers.values().any(|c| c.name == name) {
            return name;
        }
    }
}

fn rand_index(n: usize) -> usize {
    let id = cove_model::new_id();
    usize::from_str_radix(&id[..8], 16).unwrap_or(0) % n
}

impl Controller {
    /// Whether ports can be published on `[::1]`: the host's connection to `[::1]:<port>`
    /// is DNATed to the container and masqueraded to the bridge, and the reply, un-NATed
    /// back to `::1`, is delivered by the bridge's `local ::1` route, or, where br_netfilter
    /// un-NATs it at the bridge already, handed to `lo` by the `netdev` chain. Both need
    /// the IPv6 firewall.
    fn loopback6_publishing(&self) -> std::result::Result<(), String> {
        if !self.cfg.firewall || !self.cfg.firewall6 {
            return Err("the IPv6 firewall is off (--ip6tables=false)".into());
        }
        Ok(())
    }

    /// Create a container; returns its id.
    pub async fn container_create(&self, req: ContainerCreate) -> Result<ContainerId> {
        let image = self.runtime.find_image(&req.config.image)?;
        let mut st = self.state.lock().await;
        let name = match &req.name {
            Some(n) if !n.is_empty() => {
                let n = n.strip_prefix('/').unwrap_or(n).to_string();
                cove_model::validate_name("container", &n)?;
                if let Some(other) = st.containers.values().find(|c| c.name == n) {
                    return Err(Error::conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                        other.id
                    )));
                }
                n
            }
            _ => generate_name(&st),
        };
        let id = ContainerId::random();
        let mut host_config = req.host_config.clone();
        let mut config = req.config.clone();
        config.image_id = image.id.clone();
        if config.entrypoint.is_empty() && config.cmd.is_empty() {
            config.entrypoint = image.entrypoint.clone();
            config.cmd = image.cmd.clone();
        } else if config.entrypoint.is_empty() && !req.config.cmd.is_empty() {
            config.entrypoint = image.entrypoint.clone();
        }
        if config.entrypoint.is_empty() && config.cmd.is_empty() {
            return Err(Error::invalid("no command specified"));
        }
        let mut env = image.env.clone();
        env.extend(config.env.iter().cloned());
        config.env = env;
        if config.working_dir.is_empty() {
            config.working_dir = image.working_dir.clone();
        }
        for p in &image.exposed_ports {
            if !config.exposed_ports.contains(p) {
                config.exposed_ports.push(p.clone());
            }
        }

        // Resolve the network mode and the endpoints asked for.
        let mode_name = match host_config.network_mode_name.as_str() {
            "" | "default" => cove_model::DEFAULT_NETWORK.to_string(),
            other => other.to_string(),
        };
        host_config.network_mode_name = mode_name.clone();
        let mut networks: Vec<(NetworkId, EndpointSettings)> = vec![];
        let mut extra = req.endpoints.clone();
        let take_settings = |extra: &mut Vec<(String, EndpointSettings)>, keys: &[&str]| {
            extra
                .iter()
                .position(|(k, _)| keys.contains(&k.as_str()))
                .map(|i| extra.remove(i).1)
                .unwrap_or_default()
        };
        let conflicting = |what: &str| {
            Error::invalid(format!("conflicting options: {what} and the network mode"))
        };
        if let Some(target) = mode_name.strip_prefix("container:") {
            let t = st.container(target)?.clone();
            if t.id == id {
                return Err(Error::invalid("cannot join own network namespace"));
            }
            // Clients key the endpoint settings by the mode itself; empty ones mean nothing.
            let s = take_settings(&mut extra, &[mode_name.as_str()]);
            if s != EndpointSettings::default() {
                return Err(conflicting("ip, mac-address or alias"));
            }
            if !extra.is_empty() {
                return Err(conflicting("network endpoints"));
            }
            if !config.hostname.is_empty() {
                return Err(conflicting("hostname"));
            }
            if !host_config.dns.is_empty() || !host_config.extra_hosts.is_empty() {
                return Err(conflicting("dns or add-host"));
            }
            config.hostname = t.config.hostname.clone();
            host_config.network_mode = NetworkMode::Container(t.id.to_string());
        } else if let Some(mode) = NetworkMode::of_builtin_network(&mode_name) {
            let net = st.network(&mode_name)?.clone();
            let s = take_settings(&mut extra, &[mode_name.as_str(), net.id.as_str()]);
            if s.mac_address.is_some() {
                return Err(conflicting("mac-address"));
            }
            if s.ipv4_address.is_some() || s.ipv6_address.is_some() || !s.aliases.is_empty() {
                return Err(conflicting("ip or alias"));
            }
            if !extra.is_empty() {
                return Err(Error::invalid(format!(
                    "container cannot be connected to other networks with network mode {mode_name}"
                )));
            }
            networks.push((net.id.clone(), EndpointSettings::default()));
            if mode == NetworkMode::Host && config.hostname.is_empty() {
                config.hostname = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".into());
            }
            host_config.network_mode = mode;
        } else {
            let net = st.network(&mode_name)?.clone();
            if !self.drivers.of(&net)?.capability().endpoints {
                return Err(Error::invalid(format!("network {mode_name} cannot be used here")));
            }
            let s = take_settings(
                &mut extra,
                &[mode_name.as_str(), net.id.as_str(), net.name.as_str()],
            );
            check_endpoint_settings(&net, &s)?;
            networks.push((net.id.clone(), s));
            host_config.network_mode = NetworkMode::Sandbox;
            for (r, s) in extra {
                let n = st.network(&r)?.clone();
                if !self.drivers.of(&n)?.capability().endpoints {
                    return Err(Error::invalid(format!(
                        "container cannot be connected to network {} together with others",
                        n.name
                    )));
                }
                if networks.iter().any(|(id, _)| *id == n.id) {
                    return Err(Error::invalid(format!("network {} given twice", n.name)));
                }
                check_endpoint_settings(&n, &s)?;
                networks.push((n.id.clone(), s));
            }
        }
        if config.hostname.is_empty() {
            config.hostname = cove_model::short_id(&id).to_string();
        }
        etc_files::parse_extra_hosts(&host_config.extra_hosts, Self::host_gateway(&st))?;
        etc_files::check_dns_settings(&etc_files::DnsSettings {
            servers: &host_config.dns,
            search: &host_config.dns_search,
            options: &host_config.dns_options,
        })?;
        for (what, v) in [("hostname", &config.hostname), ("domainname", &config.domainname)] {
            etc_files::check_host_name(what, v)?;
        }
        host_config.links = crate::links::check_at_create(
            &st,
            &name,
            &host_config.network_mode,
            &host_config.links,
        )?;
        for (_, s) in &networks {
            crate::links::check_at_create(&st, &name, &NetworkMode::Sandbox, &s.links)?;
        }
        if let Some(b) = host_config
            .port_bindings
            .iter()
            .find(|b| b.host_ip.is_some_and(|ip| ip.is_loopback() && ip.is_ipv6()))
        {
            if let Err(why) = self.loopback6_publishing() {
                return Err(Error::invalid(format!(
                    "publishing on [::1] ({}/{}) is not possible on this host: {why}; use \
                     127.0.0.1 or the host's IPv6 address",
                    b.container_port, b.protocol
                )));
            }
        }
        // Without the firewall there is nothing to publish with (Cove has no userland
        // proxy): refused rather than recorded, since a port that looks published but is
        // unreachable would be worse than a clear error.
        if !self.cfg.firewall
            && (!host_config.port_bindings.is_empty()
                || (host_config.publish_all_ports && !config.exposed_ports.is_empty()))
        {
            return Err(Error::invalid(
                "publishing ports (-p/-P) needs the firewall, which this daemon runs without (--iptables=false)",
            ));
        }

        let record = ContainerRecord {
            id: id.clone(),
            name: name.clone(),
            created: crate::now(),
            config,
            host_config,
            networks,
            state: ContainerState::default(),
        };
        self.runtime.create_bundle(&bundle_spec(
            &record,
            &Self::hosts_for(&st, &record)?,
            &Self::resolv_for(&st, &record),
        ))?;
        if let Err(e) = self.save_container(&mut st, record) {
            let _ = self.runtime.remove(&id);
            return Err(e);
        }
        self.container_event(&st.containers[id.as_str()], "create", &[]);
        info!(container = %name, id = %id.short(), "container created");
        Ok(id)
    }
}

/// The runtime's bundle spec for a container record.
pub(crate) fn bundle_spec(c: &ContainerRecord, hosts: &str, resolv: &str) -> BundleSpec {
    let mut args = c.config.entrypoint.clone();
    args.extend(c.config.cmd.iter().cloned());
    BundleSpec {
        id: c.id.to_string(),
        image_id: c.config.image_id.clone(),
        args,
        env: c.config.env.clone(),
        cwd: if c.config.working_dir.is_empty() {
            "/".into()
        } else {
            c.config.working_dir.clone()
        },
        hostname: c.config.hostname.clone(),
        domainname: c.config.domainname.clone(),
        hosts: hosts.to_string(),
        resolv_conf: resolv.to_string(),
        network: match c.host_config.network_mode {
            NetworkMode::Host => BundleNetwork::Host,
            _ => BundleNetwork::Sandbox,
        },
    }
}
