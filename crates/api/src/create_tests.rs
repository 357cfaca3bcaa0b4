use super::*;
use crate::json::decode;
use axum::http::StatusCode;
use cove_model::Proto;

fn req(name: Option<&str>, body: &str) -> Result<ContainerCreate, ApiError> {
    create_request(name, decode::<cove_wire::ContainerCreateRequest>(body.as_bytes())?)
}

/// What `docker run -d --name web --network mynet --ip 172.30.0.9 --network-alias db
/// -p 127.0.0.1:8080:80 -p 53/udp --dns 9.9.9.9 --add-host h:1.2.3.4 --link other:o
/// busybox sh -c 'sleep 100'` sends (trimmed of fields Cove ignores).
const DOCKER_RUN: &str = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,
 "AttachStdout":false,"AttachStderr":false,"ExposedPorts":{"53/udp":{},"80/tcp":{}},"Tty":false,
 "OpenStdin":false,"StdinOnce":false,"Env":["A=1"],"Cmd":["sh","-c","sleep 100"],"Image":"busybox",
 "Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"app":"web"},
 "HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},
  "NetworkMode":"mynet","PortBindings":{"53/udp":[{"HostIp":"","HostPort":""}],
  "80/tcp":[{"HostIp":"127.0.0.1","HostPort":"8080"}]},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},
  "AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,
  "CapDrop":null,"CgroupnsMode":"","Dns":["9.9.9.9"],"DnsOptions":[],"DnsSearch":[],
  "ExtraHosts":["h:1.2.3.4"],"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":["other:o"],
  "OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,
  "SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,
  "Memory":0,"MaskedPaths":null,"ReadonlyPaths":null},
 "NetworkingConfig":{"EndpointsConfig":{"mynet":{"IPAMConfig":{"IPv4Address":"172.30.0.9"},
  "Links":null,"Aliases":["db"],"MacAddress":"","DriverOpts":null,"GwPriority":0,"NetworkID":"",
  "EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"",
  "GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSNames":null}}}}"#;

#[test]
fn docker_run_body() {
    let r = req(Some("web"), DOCKER_RUN).unwrap();
    assert_eq!(r.name.as_deref(), Some("web"));
    assert_eq!(r.config.image, "busybox");
    assert_eq!(r.config.cmd, ["sh", "-c", "sleep 100"]);
    assert!(r.config.entrypoint.is_empty());
    assert_eq!(r.config.env, ["A=1"]);
    assert_eq!(r.config.exposed_ports, ["53/udp", "80/tcp"]);
    assert_eq!(r.config.labels.get("app").map(String::as_str), Some("web"));
    let h = &r.host_config;
    assert_eq!(h.network_mode, NetworkMode::Sandbox);
    assert_eq!(h.network_mode_name, "mynet");
    assert_eq!(h.dns, ["9.9.9.9"]);
    assert_eq!(h.extra_hosts, ["h:1.2.3.4"]);
    assert_eq!(h.links, ["other:o"]);
    assert_eq!(
        h.port_bindings,
        vec![
            PortBinding { container_port: 53, protocol: Proto::Udp, host_ip: None, host_port: 0 },
            PortBinding {
                container_port: 80,
                protocol: Proto::Tcp,
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 8080
            },
        ]
    );
    assert_eq!(r.endpoints.len(), 1);
    let (net, s) = &r.endpoints[0];
    assert_eq!(net, "mynet");
    assert_eq!(s.ipv4_address, Some("172.30.0.9".parse().unwrap()));
    assert_eq!(s.aliases, ["db"]);
}

#[test]
fn minimal_body_and_defaults() {
    let r = req(None, r#"{"Image":"busybox","Cmd":"true","Entrypoint":"/bin/sh"}"#).unwrap();
    assert_eq!(r.name, None);
    assert_eq!(r.config.cmd, ["true"]);
    assert_eq!(r.config.entrypoint, ["/bin/sh"]);
    assert_eq!(r.host_config.network_mode_name, "bridge");
    assert_eq!(r.host_config.network_mode, NetworkMode::Sandbox);
    assert!(r.endpoints.is_empty());
    let r = req(Some("/slash"), r#"{"Image":"b","HostConfig":{"NetworkMode":"default"}}"#).unwrap();
    assert_eq!(r.name.as_deref(), Some("slash"));
    assert_eq!(r.host_config.network_mode_name, "bridge");
    let r = req(Some(""), r#"{"Image":"b","HostConfig":null,"NetworkingConfig":null}"#).unwrap();
    assert_eq!(r.name, None);
}

#[test]
fn network_modes() {
    assert_eq!(network_mode("host").unwrap().0, NetworkMode::Host);
    assert_eq!(network_mode("none").unwrap().0, NetworkMode::None);
    assert_eq!(
        network_mode("container:web").unwrap(),
        (NetworkMode::Container("web".into()), "container:web".into())
    );
    assert!(network_mode("container:").is_err());
    let r = req(None, r#"{"Image":"b","NetworkDisabled":true}"#).unwrap();
    assert_eq!(r.host_config.network_mode, NetworkMode::None);
}

#[test]
fn legacy_mac_address_goes_to_the_mode_network() {
    let r = req(None, r#"{"Image":"b","MacAddress":"02:42:ac:11:00:99"}"#).unwrap();
    assert_eq!(r.endpoints.len(), 1);
    assert_eq!(r.endpoints[0].0, "bridge");
    assert_eq!(r.endpoints[0].1.mac_address.unwrap().to_string(), "02:42:ac:11:00:99");
    let r = req(
        None,
        r#"{"Image":"b","MacAddress":"02:42:ac:11:00:99","HostConfig":{"NetworkMode":"n"},
        "NetworkingConfig":{"EndpointsConfig":{"a":{},"n":{"Aliases":["x"]}}}}"#,
    )
    .unwrap();
    assert_eq!(r.endpoints[0].0, "n", "the mode network goes first");
    assert_eq!(r.endpoints[0].1.aliases, ["x"]);
    assert!(r.endpoints[0].1.mac_address.is_some());
    assert_eq!(r.endpoints[1].0, "a");
    let e = req(
        None,
        r#"{"Image":"b","MacAddress":"02:42:ac:11:00:99","HostConfig":{"NetworkMode":"host"}}"#,
    )
    .unwrap_err();
    assert!(e.message.contains("conflicting options"), "{}", e.message);
}

#[test]
fn bad_bodies_are_400_naming_the_problem() {
    let cases = [
        (r#"{}"#, "no image specified"),
        (r#"{"Image":""}"#, "no image specified"),
        (r#"{"Image":"b","Cmd":7}"#, "Cmd"),
        (r#"{"Image":"b","Tty":"yes"}"#, "Tty"),
        (r#"{"Image":"b","Env":"A=1"}"#, "Env"),
        (
            r#"{"Image":"b","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"x"}]}}}"#,
            "invalid host port \"x\"",
        ),
        (
            r#"{"Image":"b","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"70000"}]}}}"#,
            "invalid host port",
        ),
        (
            r#"{"Image":"b","HostConfig":{"PortBindings":{"80/tcp":[{"HostIp":"1.2.3","HostPort":"80"}]}}}"#,
            "invalid host IP",
        ),
        (r#"{"Image":"b","HostConfig":{"PortBindings":{"80/icmp":[]}}}"#, "protocol"),
        (r#"{"Image":"b","HostConfig":{"PortBindings":{"0/tcp":[]}}}"#, "invalid port \"0/tcp\""),
        (
            r#"{"Image":"b","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"8000-8010"}]}}}"#,
            "range",
        ),
        (
            r#"{"Image":"b","HostConfig":{"PortBindings":{"80/tcp":{"HostPort":"80"}}}}"#,
            "HostConfig.PortBindings",
        ),
        (r#"{"Image":"b","ExposedPorts":{"http":{}}}"#, "invalid port \"http\""),
        (
            r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"n":{"IPAMConfig":{"IPv4Address":"x"}}}}}"#,
            "network n: invalid IPv4 address: x",
        ),
        (r#"{"Image":"b","MacAddress":"zz"}"#, "invalid MAC address"),
    ];
    for (body, want) in cases {
        let e = req(None, body).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(e.message.contains(want), "{body}: {}", e.message);
    }
}

#[test]
fn port_keys() {
    let spec = |port, proto| PortSpec { port, proto };
    assert_eq!(parse_port_key("80").unwrap(), spec(80, Proto::Tcp));
    assert_eq!(parse_port_key("53/UDP").unwrap(), spec(53, Proto::Udp));
    assert_eq!(parse_port_key("9/sctp").unwrap(), spec(9, Proto::Sctp));
    assert!(parse_port_key("80-81/tcp").is_err());
    assert!(parse_port_key("").is_err());
}

#[test]
fn default_network_key_is_bridge() {
    // `docker run busybox` (CLI 28) without --network.
    let r = req(
        None,
        r#"{"Image":"busybox","HostConfig":{"NetworkMode":"default"},
        "NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":null,"Links":null,"Aliases":null}}}}"#,
    )
    .unwrap();
    assert_eq!(r.host_config.network_mode_name, "bridge");
    assert_eq!(r.endpoints.len(), 1);
    assert_eq!(r.endpoints[0].0, "bridge");
    let e = req(
        None,
        r#"{"Image":"b","NetworkingConfig":{"EndpointsConfig":{"default":{},"bridge":{}}}}"#,
    )
    .unwrap_err();
    assert!(e.message.contains("appears twice"), "{}", e.message);
}

#[test]
fn fields_only_clients_send_are_still_ignored() {
    // `cove_wire` carries them for the CLI; the API reads them as it always has: not at all.
    let r = req(None, r#"{"Image":"busybox","User":5,"StdinOnce":"x","AttachStdout":[1]}"#);
    assert_eq!(r.unwrap().config.image, "busybox");
}

#[test]
fn a_body_the_cli_builds_decodes_to_what_it_asks_for() {
    let mut b = cove_wire::ContainerCreateRequest { image: "busybox".into(), ..Default::default() };
    b.host_config.network_mode = "default".into();
    b.host_config.port_bindings.insert(
        "80/tcp".into(),
        Some(vec![cove_wire::PortBinding { host_ip: "[::1]".into(), host_port: "8080".into() }]),
    );
    b.networking_config.endpoints_config.insert(
        "default".into(),
        Some(cove_wire::EndpointSettings { aliases: vec!["db".into()], ..Default::default() }),
    );
    let r = req(None, &serde_json::to_string(&b).unwrap()).unwrap();
    assert_eq!(r.host_config.network_mode_name, "bridge");
    assert_eq!(r.host_config.port_bindings[0].host_port, 8080);
    assert_eq!(r.host_config.port_bindings[0].host_ip, Some("::1".parse().unwrap()));
    assert_eq!(r.endpoints[0].0, "bridge");
    assert_eq!(r.endpoints[0].1.aliases, ["db"]);
}
