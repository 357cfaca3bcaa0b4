use serde_json::json;

use super::*;

fn round_trip<T>(v: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    serde_json::from_value(serde_json::to_value(v).unwrap()).unwrap()
}

#[test]
fn network_bodies_round_trip_and_leave_out_what_is_not_given() {
    let b = NetworkCreateRequest {
        name: "n1".into(),
        check_duplicate: Some(true),
        driver: "bridge".into(),
        enable_ipv6: Some(false),
        ipam: Some(Ipam {
            driver: "default".into(),
            config: vec![IpamConfig { subnet: "10.1.0.0/24".into(), ..Default::default() }],
            ..Default::default()
        }),
        labels: [("a".to_owned(), "b".to_owned())].into(),
        ..Default::default()
    };
    assert_eq!(round_trip(&b), b);
    assert_eq!(
        serde_json::to_value(&b).unwrap(),
        json!({"Name": "n1", "CheckDuplicate": true, "Driver": "bridge", "Scope": "",
               "Internal": false, "Attachable": false, "Ingress": false, "ConfigOnly": false,
               "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": "10.1.0.0/24"}]},
               "EnableIPv6": false, "Options": {}, "Labels": {"a": "b"}})
    );
    let c = NetworkConnectRequest { container: "c1".into(), endpoint_config: None };
    assert_eq!(serde_json::to_value(&c).unwrap(), json!({"Container": "c1"}));
    assert_eq!(round_trip(&c), c);
}

#[test]
fn decoding_is_lenient() {
    // null is the default, unknown fields are ignored.
    let b: NetworkCreateRequest = serde_json::from_value(json!({
        "Name": null, "Labels": null, "IPAM": {"Config": null}, "Whatever": [1, {"x": 2}],
    }))
    .unwrap();
    assert_eq!(b.name, "");
    assert!(b.labels.is_empty());
    assert_eq!(b.ipam.unwrap().config, []);
    // A string where Docker takes a list; any value as an exposed port's set entry.
    let c: ContainerCreateRequest = serde_json::from_value(json!({
        "Cmd": "ls", "Entrypoint": null, "ExposedPorts": {"80/tcp": {}, "81": null},
    }))
    .unwrap();
    assert_eq!(c.cmd, Some(vec!["ls".to_owned()]));
    assert_eq!(c.entrypoint, None);
    assert_eq!(c.exposed_ports.len(), 2);
    // What only the CLI sends is not read back: a wrong type there is no error.
    let c: ContainerCreateRequest =
        serde_json::from_value(json!({"User": 5, "StdinOnce": "x", "AttachStdout": []})).unwrap();
    assert_eq!(c, ContainerCreateRequest::default());
    let e: ExecCreateRequest =
        serde_json::from_value(json!({"User": "root", "AttachStderr": 1, "Cmd": ["id"]})).unwrap();
    assert_eq!(e.user, None);
    assert_eq!(e.cmd, Some(vec!["id".to_owned()]));
}

#[test]
fn container_and_exec_bodies_keep_their_shape() {
    let mut c = ContainerCreateRequest { image: "busybox".into(), ..Default::default() };
    c.exposed_ports.insert("80/tcp".into(), EmptyObject);
    c.host_config.port_bindings.insert(
        "80/tcp".into(),
        Some(vec![PortBinding { host_ip: String::new(), host_port: "8080".into() }]),
    );
    c.networking_config.endpoints_config.insert("n1".into(), Some(EndpointSettings::default()));
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["ExposedPorts"], json!({"80/tcp": {}}));
    assert_eq!(v["Cmd"], serde_json::Value::Null);
    assert_eq!(
        v["HostConfig"]["PortBindings"],
        json!({"80/tcp": [{"HostIp": "", "HostPort": "8080"}]})
    );
    assert_eq!(v["NetworkingConfig"], json!({"EndpointsConfig": {"n1": {}}}));
    assert!(v.get("MacAddress").is_none() && v.get("NetworkDisabled").is_none());
    assert_eq!(v["User"], "");
    let back = round_trip(&c);
    assert_eq!(back.host_config, c.host_config);
    assert_eq!(back.networking_config, c.networking_config);
    let s = ExecStartRequest { detach: true, tty: false };
    assert_eq!(serde_json::to_value(&s).unwrap(), json!({"Detach": true, "Tty": false}));
    assert_eq!(round_trip(&s), s);
    assert_eq!(serde_json::to_string(&EmptyObject).unwrap(), "{}");
}
