//! The `host` and `null` drivers, and the built-in networks a daemon creates at start.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use cove_model::{DriverConfig, EndpointRecord, Error, NetworkRecord, Result};

use crate::bridge::keys;
use crate::driver::{Capability, NetworkDriver, NetworkRequest, Scope};
use crate::plan::Op;

fn no_options(driver: &str, req: &NetworkRequest<'_>) -> Result<()> {
    if req.options.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(format!("the {driver} driver takes no options or IPAM configuration")))
    }
}

fn no_endpoints(driver: &str) -> Error {
    Error::invalid(format!("the {driver} network has no endpoints to join"))
}

/// The host's own network stack (`--network host`).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostDriver;

impl NetworkDriver for HostDriver {
    fn name(&self) -> &str {
        "host"
    }
    fn capability(&self) -> Capability {
        Capability { scope: Scope::Local, endpoints: false, builtin_only: true, ipam: false }
    }
    fn validate(&self, req: &NetworkRequest<'_>) -> Result<DriverConfig> {
        no_options("host", req)?;
        Ok(DriverConfig::Host)
    }
    fn join_ops(&self, _: &NetworkRecord, _: &EndpointRecord, _: &Path) -> Result<Vec<Op>> {
        Err(no_endpoints("host"))
    }
}

/// A sandbox with only loopback (`--network none`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NullDriver;

impl NetworkDriver for NullDriver {
    fn name(&self) -> &str {
        "null"
    }
    fn capability(&self) -> Capability {
        Capability { scope: Scope::Local, endpoints: false, builtin_only: true, ipam: false }
    }
    fn validate(&self, req: &NetworkRequest<'_>) -> Result<DriverConfig> {
        no_options("null", req)?;
        Ok(DriverConfig::Null)
    }
    fn join_ops(&self, _: &NetworkRecord, _: &EndpointRecord, _: &Path) -> Result<Vec<Op>> {
        Err(no_endpoints("null"))
    }
}

/// The daemon's flags that shape its default network (dockerd's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultNetworkFlags {
    /// `--bip`: the gateway address with the prefix length.
    pub bip: Option<IpNet>,
    /// `--fixed-cidr`: the dynamic range.
    pub fixed_cidr: Option<IpNet>,
    /// `--icc`.
    pub icc: bool,
}

/// One IPAM pool of a built-in network, as the daemon's flags give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinPool {
    /// Subnet.
    pub subnet: IpNet,
    /// Dynamic range.
    pub ip_range: Option<IpNet>,
    /// Gateway.
    pub gateway: Option<IpAddr>,
}

/// A network the daemon creates at start if it does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinNetwork {
    /// Its name (`bridge`, `host`, `none`).
    pub name: &'static str,
    /// Its driver.
    pub driver: &'static str,
    /// Its driver options.
    pub options: BTreeMap<String, String>,
    /// Its pools (empty: chosen from the default pools).
    pub pools: Vec<BuiltinPool>,
    /// The device name it asks for.
    pub device: Option<&'static str>,
}

/// Device name of the default network's bridge.
pub const DEFAULT_BRIDGE_DEVICE: &str = "cove0";

/// The built-in networks, as Docker has them: `bridge` (a bridge on `cove0`, from `--bip` /
/// `--fixed-cidr` or the first free default pool, no embedded DNS), `host` and `none`.
pub fn builtin_networks(flags: &DefaultNetworkFlags) -> Vec<BuiltinNetwork> {
    let options = BTreeMap::from([
        (keys::DEFAULT_BRIDGE.to_string(), "true".to_string()),
        (keys::ICC.to_string(), flags.icc.to_string()),
        (keys::MASQUERADE.to_string(), "true".to_string()),
        (keys::HOST_BINDING_IPV4.to_string(), "0.0.0.0".to_string()),
        (keys::NAME.to_string(), DEFAULT_BRIDGE_DEVICE.to_string()),
    ]);
    let pools = match (flags.bip, flags.fixed_cidr) {
        (Some(bip), fc) => {
            vec![BuiltinPool { subnet: bip.trunc(), ip_range: fc, gateway: Some(bip.addr()) }]
        }
        (None, Some(fc)) => {
            vec![BuiltinPool { subnet: fc.trunc(), ip_range: Some(fc), gateway: None }]
        }
        (None, None) => vec![],
    };
    vec![
        BuiltinNetwork {
            name: cove_model::DEFAULT_NETWORK,
            driver: crate::DEFAULT_DRIVER,
            options,
            pools,
            device: Some(DEFAULT_BRIDGE_DEVICE),
        },
        BuiltinNetwork {
            name: "host",
            driver: "host",
            options: BTreeMap::new(),
            pools: vec![],
            device: None,
        },
        BuiltinNetwork {
            name: "none",
            driver: "null",
            options: BTreeMap::new(),
            pools: vec![],
            device: None,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_network_follows_the_flags() {
        let flags = DefaultNetworkFlags {
            bip: Some("10.7.0.1/16".parse().unwrap()),
            fixed_cidr: Some("10.7.1.0/24".parse().unwrap()),
            icc: false,
        };
        let nets = builtin_networks(&flags);
        assert_eq!(nets.iter().map(|n| n.name).collect::<Vec<_>>(), ["bridge", "host", "none"]);
        let b = &nets[0];
        assert_eq!(b.options[keys::ICC], "false");
        assert_eq!(b.pools[0].subnet.to_string(), "10.7.0.0/16");
        assert_eq!(b.pools[0].gateway.unwrap().to_string(), "10.7.0.1");
        let nets =
            builtin_networks(&DefaultNetworkFlags { bip: None, fixed_cidr: None, icc: true });
        assert!(nets[0].pools.is_empty());
    }

    #[test]
    fn host_and_null_take_nothing() {
        let opts = BTreeMap::from([("x".to_string(), "1".to_string())]);
        let req = NetworkRequest {
            id: "n",
            options: &opts,
            default_mtu: 1500,
            device: None,
            underlay: None,
        };
        for d in [&HostDriver as &dyn NetworkDriver, &NullDriver] {
            assert!(d.validate(&req).is_err());
            assert!(!d.capability().endpoints && d.capability().builtin_only);
        }
    }
}
