//! Hand-built records for the encoding and filter tests.

use std::collections::BTreeMap;

use cove_controller::{ContainerView, NetworkView};
use cove_model::{
    BridgeOptions, ContainerConfig, ContainerRecord, ContainerState, DriverConfig, EndpointRecord,
    EndpointSettings, HostConfig, IpamPool, MacAddr, NetworkRecord, PortBinding, Status,
};

pub(crate) const NET_ID: &str = "7ea29fc1412292a2d7bba362f9253545fecdfa8ce9a6e37dd10ba8bee7129812";
pub(crate) const CTR_ID: &str = "19a4d5d687bd1e8a5d8e0e5d0b4bcb7a07f1c0b3c4f1e1c25e4f2e8a1c4b8d2e";
pub(crate) const EP_ID: &str = "628cadb8bcb92de107b2a1e516cbffe463e321f548feb37697cce00ad694f21a";

pub(crate) fn net(name: &str, builtin: bool) -> NetworkRecord {
    NetworkRecord {
        id: if name == "web" {
            NET_ID.parse().unwrap()
        } else {
            format!("{:0<64}", cove_model::hex(name.as_bytes())).parse().unwrap()
        },
        name: name.into(),
        driver: "bridge".into(),
        created: "2024-01-01T00:00:00.123456789Z".into(),
        enable_ipv6: false,
        internal: false,
        attachable: false,
        ipam_driver: "default".into(),
        ipam_options: BTreeMap::new(),
        ipam: vec![IpamPool {
            subnet: "172.18.0.0/16".parse().unwrap(),
            ip_range: None,
            gateway: Some("172.18.0.1".parse().unwrap()),
            aux_addresses: BTreeMap::new(),
        }],
        options: [("com.docker.network.bridge.name".to_string(), "br-web".to_string())].into(),
        labels: [("env".to_string(), "prod".to_string())].into(),
        config: DriverConfig::Bridge(BridgeOptions {
            name: "br-web".into(),
            enable_icc: true,
            enable_ip_masquerade: true,
            host_binding_ipv4: None,
            mtu: 1500,
        }),
        builtin,
    }
}

pub(crate) fn endpoint(net: &NetworkRecord) -> EndpointRecord {
    EndpointRecord {
        id: EP_ID.parse().unwrap(),
        network_id: net.id.clone(),
        container_id: CTR_ID.parse().unwrap(),
        ifname: "eth0".into(),
        host_ifname: Some("veth1234".into()),
        mac: MacAddr::from_ipv4("172.18.0.2".parse().unwrap()),
        ipv4: Some("172.18.0.2/16".parse().unwrap()),
        ipv6: None,
        gateway4: Some("172.18.0.1".parse().unwrap()),
        gateway6: None,
        aliases: vec!["db".into()],
    }
}

pub(crate) fn net_view(name: &str, with_endpoint: bool) -> NetworkView {
    let record = net(name, name == "bridge");
    let endpoints =
        if with_endpoint { vec![(endpoint(&record), "test".to_string())] } else { vec![] };
    NetworkView { record, endpoints, scope: "local", peers: vec![], encryption: None }
}

pub(crate) fn container(status: Status) -> ContainerRecord {
    let web = net("web", false);
    ContainerRecord {
        id: CTR_ID.parse().unwrap(),
        name: "test".into(),
        created: "2024-01-01T00:00:00Z".into(),
        config: ContainerConfig {
            image_id: "sha256:aaaa".into(),
            image: "busybox".into(),
            entrypoint: vec![],
            cmd: vec!["sh".into(), "-c".into(), "sleep 100".into()],
            env: vec!["PATH=/bin".into()],
            working_dir: "/".into(),
            hostname: "19a4d5d687bd".into(),
            domainname: String::new(),
            labels: [("app".to_string(), "web".to_string())].into(),
            tty: false,
            open_stdin: false,
            exposed_ports: vec!["80/tcp".into(), "53/udp".into()],
        },
        host_config: HostConfig {
            network_mode_name: "web".into(),
            port_bindings: vec![PortBinding {
                container_port: 80,
                protocol: cove_model::Proto::Tcp,
                host_ip: None,
                host_port: 8080,
            }],
            ..HostConfig::default()
        },
        networks: vec![(
            web.id,
            EndpointSettings {
                ipv4_address: Some("172.18.0.2".parse().unwrap()),
                aliases: vec!["db".into()],
                ..Default::default()
            },
        )],
        state: ContainerState {
            status,
            pid: if status == Status::Running { 4242 } else { 0 },
            started_at: "2024-01-01T00:00:01Z".into(),
            sandbox_key: if status == Status::Running {
                "/run/cove/netns/abc".into()
            } else {
                String::new()
            },
            ports: if status == Status::Running {
                vec![PortBinding {
                    container_port: 80,
                    protocol: cove_model::Proto::Tcp,
                    host_ip: None,
                    host_port: 8080,
                }]
            } else {
                vec![]
            },
            ..ContainerState::default()
        },
    }
}

pub(crate) fn container_view(status: Status) -> ContainerView {
    let web = net("web", false);
    let ep = (status == Status::Running).then(|| endpoint(&web));
    ContainerView { record: container(status), networks: vec![(web, ep)] }
}
