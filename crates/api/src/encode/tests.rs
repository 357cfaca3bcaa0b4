//! The exact Docker field names and JSON types of encoded records.

use serde_json::{json, Value};

use super::*;
use crate::testutil::{container_view, net_view, CTR_ID, EP_ID, NET_ID};
use cove_model::Status;

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn network_inspect_shape() {
    let j = to_json(&network::inspect(&net_view("web", true)));
    assert_eq!(
        keys(&j),
        [
            "Attachable",
            "ConfigFrom",
            "ConfigOnly",
            "Containers",
            "Created",
            "Driver",
            "EnableIPv4",
            "EnableIPv6",
            "IPAM",
            "Id",
            "Ingress",
            "Internal",
            "Labels",
            "Name",
            "Options",
            "Scope"
        ]
    );
    assert_eq!(j["Name"], "web");
    assert_eq!(j["Id"], NET_ID);
    assert_eq!(j["Created"], "2024-01-01T00:00:00.123456789Z");
    assert_eq!(j["Scope"], "local");
    assert_eq!(j["Driver"], "bridge");
    assert_eq!(j["EnableIPv4"], true);
    assert_eq!(j["EnableIPv6"], false);
    assert_eq!(j["Ingress"], false);
    assert_eq!(j["ConfigFrom"], json!({ "Network": "" }));
    assert_eq!(
        j["IPAM"],
        json!({ "Driver": "default", "Options": {}, "Config": [{ "Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1" }] })
    );
    assert_eq!(
        j["Containers"],
        json!({ CTR_ID: {
            "Name": "test", "EndpointID": EP_ID, "MacAddress": "02:42:ac:12:00:02",
            "IPv4Address": "172.18.0.2/16", "IPv6Address": ""
        }})
    );
    assert_eq!(j["Options"]["com.docker.network.bridge.name"], "br-web");
    assert_eq!(j["Labels"], json!({ "env": "prod" }));
    // List entries carry no containers (as Docker since API 1.28).
    let s = to_json(&network::summary(&net_view("web", true)));
    assert_eq!(s["Containers"], json!({}));
}

#[test]
fn ipam_config_optional_fields() {
    let mut v = net_view("web", false);
    let pool = &mut v.record.ipam[0];
    pool.ip_range = Some("172.18.5.0/24".parse().unwrap());
    pool.gateway = None;
    pool.aux_addresses.insert("h".into(), "172.18.1.1".parse().unwrap());
    let j = to_json(&network::inspect(&v));
    assert_eq!(
        j["IPAM"]["Config"][0],
        json!({ "Subnet": "172.18.0.0/16", "IPRange": "172.18.5.0/24", "AuxiliaryAddresses": { "h": "172.18.1.1" } })
    );
}

#[test]
fn container_summary_shape() {
    let now = time::parse("2024-01-01T00:00:06Z").unwrap();
    let j = to_json(&container::summary(&container_view(Status::Running), now));
    assert_eq!(
        keys(&j),
        [
            "Command",
            "Created",
            "HostConfig",
            "Id",
            "Image",
            "ImageID",
            "Labels",
            "Mounts",
            "Names",
            "NetworkSettings",
            "Ports",
            "State",
            "Status"
        ]
    );
    assert_eq!(j["Id"], CTR_ID);
    assert_eq!(j["Names"], json!(["/test"]));
    assert_eq!(j["Image"], "busybox");
    assert_eq!(j["ImageID"], "sha256:aaaa");
    assert_eq!(j["Command"], "sh -c sleep 100");
    assert_eq!(j["Created"], 1_704_067_200);
    assert_eq!(j["State"], "running");
    assert_eq!(j["Status"], "Up 5 seconds");
    assert_eq!(j["HostConfig"], json!({ "NetworkMode": "web" }));
    assert_eq!(
        j["Ports"],
        json!([
            { "IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp" },
            { "PrivatePort": 53, "Type": "udp" }
        ])
    );
    assert_eq!(j["Mounts"], json!([]));
    let ep = &j["NetworkSettings"]["Networks"]["web"];
    assert_eq!(ep["IPAddress"], "172.18.0.2");
    assert_eq!(ep["IPPrefixLen"], 16);
    assert_eq!(ep["NetworkID"], NET_ID);

    let mut v = container_view(Status::Running);
    // A run whose ports are not bound shows them as exposed only.
    v.record.state.ports.clear();
    let j = to_json(&container::summary(&v, now));
    assert_eq!(
        j["Ports"],
        json!([{ "PrivatePort": 80, "Type": "tcp" }, { "PrivatePort": 53, "Type": "udp" }])
    );

    let j = to_json(&container::summary(&container_view(Status::Created), now));
    assert_eq!(j["Status"], "Created");
    assert_eq!(
        j["Ports"],
        json!([{ "PrivatePort": 80, "Type": "tcp" }, { "PrivatePort": 53, "Type": "udp" }])
    );
}

#[test]
fn container_inspect_shape() {
    let j = to_json(&container_inspect::inspect(
        &container_view(Status::Running),
        std::path::Path::new("/var/lib/cove"),
    ));
    assert_eq!(j["Id"], CTR_ID);
    assert_eq!(j["Name"], "/test");
    assert_eq!(j["Path"], "sh");
    assert_eq!(j["Args"], json!(["-c", "sleep 100"]));
    assert_eq!(j["Image"], "sha256:aaaa");
    assert_eq!(j["Driver"], "overlay");
    assert_eq!(j["Platform"], "linux");
    assert_eq!(j["RestartCount"], 0);
    assert_eq!(j["HostsPath"], format!("/var/lib/cove/containers/{CTR_ID}/hosts"));
    assert_eq!(j["ResolvConfPath"], format!("/var/lib/cove/containers/{CTR_ID}/resolv.conf"));
    assert_eq!(j["Mounts"], json!([]));
    let st = &j["State"];
    assert_eq!(
        keys(st),
        [
            "Dead",
            "Error",
            "ExitCode",
            "FinishedAt",
            "OOMKilled",
            "Paused",
            "Pid",
            "Restarting",
            "Running",
            "StartedAt",
            "Status"
        ]
    );
    assert_eq!(st["Status"], "running");
    assert_eq!(st["Running"], true);
    assert_eq!(st["Pid"], 4242);
    assert_eq!(st["ExitCode"], 0);
    assert_eq!(st["FinishedAt"], cove_model::ZERO_TIME);
    let c = &j["Config"];
    assert_eq!(c["Image"], "busybox");
    assert_eq!(c["Cmd"], json!(["sh", "-c", "sleep 100"]));
    assert_eq!(c["Entrypoint"], Value::Null);
    assert_eq!(c["ExposedPorts"], json!({ "53/udp": {}, "80/tcp": {} }));
    assert_eq!(c["Labels"], json!({ "app": "web" }));
    assert_eq!(c["Tty"], false);
    let h = &j["HostConfig"];
    assert_eq!(h["NetworkMode"], "web");
    assert_eq!(h["PortBindings"], json!({ "80/tcp": [{ "HostIp": "", "HostPort": "8080" }] }));
    assert_eq!(h["Dns"], json!([]));
    assert_eq!(h["Links"], Value::Null);
    assert_eq!(h["AutoRemove"], false);
    let n = &j["NetworkSettings"];
    assert_eq!(n["SandboxKey"], "/run/cove/netns/abc");
    assert_eq!(n["SandboxID"].as_str().unwrap().len(), 64);
    assert_eq!(n["Bridge"], "");
    assert_eq!(
        n["Ports"],
        json!({ "53/udp": null, "80/tcp": [{ "HostIp": "0.0.0.0", "HostPort": "8080" }] })
    );
    // Not on "bridge": the legacy fields are empty.
    assert_eq!(n["IPAddress"], "");
    assert_eq!(n["IPPrefixLen"], 0);
    let ep = &n["Networks"]["web"];
    assert_eq!(
        keys(ep),
        [
            "Aliases",
            "DNSNames",
            "DriverOpts",
            "EndpointID",
            "Gateway",
            "GlobalIPv6Address",
            "GlobalIPv6PrefixLen",
            "GwPriority",
            "IPAMConfig",
            "IPAddress",
            "IPPrefixLen",
            "IPv6Gateway",
            "Links",
            "MacAddress",
            "NetworkID"
        ]
    );
    assert_eq!(ep["IPAMConfig"], json!({ "IPv4Address": "172.18.0.2" }));
    assert_eq!(ep["Aliases"], json!(["db"]));
    assert_eq!(ep["Links"], Value::Null);
    assert_eq!(ep["DriverOpts"], Value::Null);
    assert_eq!(ep["EndpointID"], EP_ID);
    assert_eq!(ep["Gateway"], "172.18.0.1");
    assert_eq!(ep["IPAddress"], "172.18.0.2");
    assert_eq!(ep["IPPrefixLen"], 16);
    assert_eq!(ep["MacAddress"], "02:42:ac:12:00:02");
    assert_eq!(ep["GlobalIPv6Address"], "");
    assert_eq!(ep["DNSNames"], json!(["test", "db", "19a4d5d687bd"]));
}

#[test]
fn stopped_container_keeps_networks_with_empty_addresses() {
    let j = to_json(&container_inspect::inspect(
        &container_view(Status::Exited),
        std::path::Path::new("/d"),
    ));
    let n = &j["NetworkSettings"];
    assert_eq!(n["Ports"], json!({}));
    assert_eq!(n["SandboxID"], "");
    let ep = &n["Networks"]["web"];
    assert_eq!(ep["NetworkID"], NET_ID);
    assert_eq!(ep["EndpointID"], "");
    assert_eq!(ep["IPAddress"], "");
    assert_eq!(ep["IPPrefixLen"], 0);
    assert_eq!(ep["Gateway"], "");
    assert_eq!(j["State"]["Running"], false);
    assert_eq!(j["State"]["Status"], "exited");
}

#[test]
fn legacy_fields_come_from_the_bridge_network() {
    let mut v = container_view(Status::Running);
    v.networks[0].0.name = "bridge".into();
    v.networks[0].0.builtin = true;
    let j = to_json(&container_inspect::inspect(&v, std::path::Path::new("/d")));
    let n = &j["NetworkSettings"];
    assert_eq!(n["IPAddress"], "172.18.0.2");
    assert_eq!(n["IPPrefixLen"], 16);
    assert_eq!(n["Gateway"], "172.18.0.1");
    assert_eq!(n["EndpointID"], EP_ID);
    assert_eq!(n["MacAddress"], "02:42:ac:12:00:02");
    assert_eq!(n["Networks"]["bridge"]["DNSNames"], Value::Null, "no DNS on the default bridge");
}

#[test]
fn image_shapes() {
    let i = cove_controller::ImageInfo {
        id: "sha256:abc".into(),
        tags: vec!["busybox:latest".into()],
        created: "2024-01-01T00:00:00Z".into(),
        size: 1234,
        cmd: vec!["sh".into()],
        exposed_ports: vec!["80/tcp".into()],
        ..Default::default()
    };
    let s = to_json(&image::summary(&i));
    assert_eq!(
        s,
        json!({ "Id": "sha256:abc", "ParentId": "", "RepoTags": ["busybox:latest"], "RepoDigests": [],
            "Created": 1_704_067_200, "Size": 1234, "SharedSize": -1, "VirtualSize": 1234, "Labels": {},
            "Containers": -1 })
    );
    let j = to_json(&image::inspect(&i));
    assert_eq!(j["Id"], "sha256:abc");
    assert_eq!(j["Created"], "2024-01-01T00:00:00Z");
    assert_eq!(j["Os"], "linux");
    assert_eq!(j["Architecture"], "amd64");
    assert_eq!(j["Config"]["Cmd"], json!(["sh"]));
    assert_eq!(j["Config"]["Entrypoint"], Value::Null);
    assert_eq!(j["Config"]["ExposedPorts"], json!({ "80/tcp": {} }));
}
