use super::*;
use crate::json::decode;
use crate::testutil::{net, net_view, NET_ID};

fn create(body: &str) -> Result<NetworkCreate, ApiError> {
    create_request(decode::<cove_wire::NetworkCreateRequest>(body.as_bytes())?)
}

#[test]
fn create_body_from_docker_cli() {
    // What `docker network create --subnet ... --label ... -o ...` sends.
    let body = r#"{"Name":"web","Driver":"bridge","Scope":"","EnableIPv4":null,"EnableIPv6":null,
        "IPAM":{"Driver":"default","Options":{},"Config":[{"Subnet":"172.30.0.0/16",
        "IPRange":"172.30.5.0/24","Gateway":"172.30.0.254","AuxiliaryAddresses":{"host1":"172.30.1.3"}}]},
        "Internal":true,"Attachable":false,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,
        "Options":{"com.docker.network.bridge.enable_icc":"false"},"Labels":{"a":"b"},"CheckDuplicate":true}"#;
    let r = create(body).unwrap();
    assert_eq!(r.name, "web");
    assert_eq!(r.driver, "bridge");
    assert!(r.internal && !r.attachable && !r.enable_ipv6);
    assert_eq!(r.ipam_driver, "default");
    assert_eq!(
        r.ipam_config,
        vec![IpamConfigRequest {
            subnet: Some("172.30.0.0/16".parse().unwrap()),
            ip_range: Some("172.30.5.0/24".parse().unwrap()),
            gateway: Some("172.30.0.254".parse().unwrap()),
            aux_addresses: vec![("host1".into(), "172.30.1.3".parse().unwrap())],
        }]
    );
    assert_eq!(
        r.options.get("com.docker.network.bridge.enable_icc").map(String::as_str),
        Some("false")
    );
    assert_eq!(r.labels.get("a").map(String::as_str), Some("b"));
    let r = create(r#"{"Name":"x","EnableIPv6":true,"IPAM":{"Config":null}}"#).unwrap();
    assert!(r.enable_ipv6);
    assert!(r.ipam_config.is_empty());
}

#[test]
fn create_body_refusals() {
    let cases = [
        (r#"{"Name":""}"#, "network name is required"),
        (r#"{}"#, "network name is required"),
        (r#"{"Name":"x","Ingress":true}"#, "ingress"),
        (r#"{"Name":"x","ConfigOnly":true}"#, "config-only"),
        (r#"{"Name":"x","ConfigFrom":{"Network":"y"}}"#, "ConfigFrom"),
        (r#"{"Name":"x","Scope":"swarm"}"#, "scope"),
        (r#"{"Name":"x","EnableIPv4":false}"#, "IPv4"),
        (r#"{"Name":"x","Internal":"yes"}"#, "Internal"),
        (r#"{"Name":"x","Options":{"a":1}}"#, "Options"),
        (r#"{"Name":"x","IPAM":{"Config":[{"Subnet":10}]}}"#, "IPAM.Config[0].Subnet"),
    ];
    for (body, want) in cases {
        let e = create(body).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(e.message.contains(want), "{body}: {}", e.message);
    }
}

#[test]
fn connect_body() {
    let b: cove_wire::NetworkConnectRequest = decode(
        br#"{"Container":"c1","EndpointConfig":{"IPAMConfig":{"IPv4Address":"172.18.0.9","IPv6Address":""},
        "Aliases":["db",""],"MacAddress":"02:42:ac:12:00:09","DriverOpts":null,"Links":null}}"#,
    )
    .unwrap();
    assert_eq!(b.container, "c1");
    let s = endpoint_settings(b.endpoint_config.as_ref().unwrap()).unwrap();
    assert_eq!(s.ipv4_address, Some("172.18.0.9".parse().unwrap()));
    assert_eq!(s.ipv6_address, None);
    assert_eq!(s.mac_address.unwrap().to_string(), "02:42:ac:12:00:09");
    assert_eq!(s.aliases, vec!["db".to_string()]);

    let b: cove_wire::NetworkConnectRequest =
        decode(br#"{"Container":"c1","EndpointConfig":null}"#).unwrap();
    assert!(b.endpoint_config.is_none());

    for (bad, want) in [
        (r#"{"IPAMConfig":{"IPv4Address":"fe80::1"}}"#, "invalid IPv4 address: fe80::1"),
        (r#"{"IPAMConfig":{"IPv6Address":"10.0.0.1"}}"#, "invalid IPv6 address: 10.0.0.1"),
        (r#"{"IPAMConfig":{"IPv4Address":"300.1.1.1"}}"#, "invalid IPv4 address"),
        (r#"{"MacAddress":"01:00:5e:00:00:01"}"#, "multicast"),
    ] {
        let e = endpoint_settings(&decode::<cove_wire::EndpointSettings>(bad.as_bytes()).unwrap())
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains(want), "{bad}: {}", e.message);
    }
    let d: cove_wire::NetworkDisconnectRequest =
        decode(br#"{"Container":"c1","Force":true}"#).unwrap();
    assert!(d.force);
    assert!(require_container(" ").is_err());
}

fn names(f: &str) -> Result<Vec<String>, ApiError> {
    let f = Filters::parse(Some(f))?;
    let select = list_filter(&f)?;
    let views = [net_view("bridge", false), net_view("web", true), net_view("webtest", false)];
    Ok(views.iter().filter(|v| select(v)).map(|v| v.record.name.clone()).collect())
}

#[test]
fn list_filters() {
    assert_eq!(names("{}").unwrap(), ["bridge", "web", "webtest"]);
    assert_eq!(names(r#"{"name":{"web":true}}"#).unwrap(), ["web", "webtest"]);
    assert_eq!(names(r#"{"name":["^web$"]}"#).unwrap(), ["web"]);
    assert_eq!(names(r#"{"id":["7ea29f"]}"#).unwrap(), ["web"]);
    assert_eq!(names(r#"{"label":["env=prod"]}"#).unwrap().len(), 3);
    assert!(names(r#"{"label":["env=dev"]}"#).unwrap().is_empty());
    assert_eq!(names(r#"{"driver":["bridge"]}"#).unwrap().len(), 3);
    assert!(names(r#"{"driver":["macvlan"]}"#).unwrap().is_empty());
    assert_eq!(names(r#"{"type":["builtin"]}"#).unwrap(), ["bridge"]);
    assert_eq!(names(r#"{"type":["custom"]}"#).unwrap(), ["web", "webtest"]);
    assert_eq!(names(r#"{"dangling":["true"]}"#).unwrap(), ["webtest"]);
    assert_eq!(names(r#"{"dangling":["false"]}"#).unwrap(), ["bridge", "web"]);
    assert_eq!(names(r#"{"scope":["local"]}"#).unwrap().len(), 3);
    assert!(names(r#"{"scope":["swarm"]}"#).unwrap().is_empty());
    for bad in [
        r#"{"type":["x"]}"#,
        r#"{"dangling":["maybe"]}"#,
        r#"{"colour":["x"]}"#,
        r#"{"scope":["x"]}"#,
    ] {
        assert_eq!(names(bad).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[test]
fn prune_filters() {
    let now = 1_704_067_200.0 + 3600.0; // an hour after the fixtures' creation
    let r = net("web", false);
    let f = |s: &str| prune_filter(&Filters::parse(Some(s)).unwrap(), now).map(|p| p(&r));
    assert!(f("{}").unwrap());
    assert!(f(r#"{"until":["30m"]}"#).unwrap());
    assert!(!f(r#"{"until":["2h"]}"#).unwrap());
    assert!(f(r#"{"until":["2024-01-01T00:30:00Z"]}"#).unwrap());
    assert!(!f(r#"{"until":["1704067000"]}"#).unwrap());
    assert!(f(r#"{"label":["env"]}"#).unwrap());
    assert!(!f(r#"{"label!":["env=prod"]}"#).unwrap());
    assert!(f(r#"{"label!":["env=dev"]}"#).unwrap());
    assert!(f(r#"{"until":["soon"]}"#).is_err());
    assert!(f(r#"{"name":["x"]}"#).is_err());
    assert_eq!(parse_go_duration("1h30m"), Some(5400.0));
    assert_eq!(parse_go_duration("1.5s"), Some(1.5));
    assert_eq!(parse_go_duration("10"), None);
    assert_eq!(r.id, NET_ID);
}
