//! Fuzz-style properties of request-body decoding: arbitrary bytes and arbitrary JSON built
//! from Docker's field names never panic, every refusal is a 400 naming the problem, unknown
//! fields are ignored (as dockerd ignores them) and never change what a known field means,
//! and bodies over the limit are 413 before they are read.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::json::{decode, DockerJson};
use crate::networks;

/// Field names of Docker's request bodies, so random objects hit real fields with wrong
/// types, nulls and nesting.
const KEYS: &[&str] = &[
    "Name",
    "Driver",
    "Scope",
    "Internal",
    "Attachable",
    "Ingress",
    "ConfigOnly",
    "ConfigFrom",
    "Network",
    "IPAM",
    "Config",
    "Subnet",
    "IPRange",
    "Gateway",
    "AuxiliaryAddresses",
    "Options",
    "Labels",
    "EnableIPv4",
    "EnableIPv6",
    "CheckDuplicate",
    "Container",
    "EndpointConfig",
    "IPAMConfig",
    "IPv4Address",
    "IPv6Address",
    "Aliases",
    "MacAddress",
    "Links",
    "DriverOpts",
    "Force",
    "Hostname",
    "Domainname",
    "Env",
    "Cmd",
    "Entrypoint",
    "Image",
    "WorkingDir",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "NetworkDisabled",
    "HostConfig",
    "NetworkMode",
    "PortBindings",
    "HostIp",
    "HostPort",
    "PublishAllPorts",
    "Dns",
    "DnsOptions",
    "DnsSearch",
    "ExtraHosts",
    "AutoRemove",
    "NetworkingConfig",
    "EndpointsConfig",
    "AttachStdin",
    "Privileged",
    "Detach",
    "User",
    "AttachStdout",
    "AttachStderr",
    "StdinOnce",
    "80/tcp",
    "bridge",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => "[A-Za-z0-9/._-]{0,10}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[ -~]{0,16}".prop_map(Value::from),
        proptest::sample::select(
            &[
                "bridge",
                "host",
                "none",
                "container:x",
                "10.0.0.0/24",
                "10.0.0.1",
                "fd00::1",
                "02:42:ac:11:00:02",
                "80/tcp",
                "8080",
                "1-65535",
                "busybox",
                "",
                "true",
            ][..]
        )
        .prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(key(), json(), 0..8)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// A refusal is a client error with a message.
fn decode_all(bytes: &[u8]) {
    crate::fuzz_decode(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_docker_shaped_json_never_panics(v in object()) {
        decode_all(v.to_string().as_bytes());
    }

    #[test]
    fn truncated_json_is_a_400(v in object(), cut in any::<prop::sample::Index>()) {
        let text = v.to_string();
        let end = cut.index(text.len().max(1));
        if end < text.len() {
            let e = decode::<cove_wire::NetworkCreateRequest>(&text.as_bytes()[..end]).unwrap_err();
            prop_assert_eq!(e.status, StatusCode::BAD_REQUEST);
            prop_assert!(e.message.starts_with("invalid JSON"), "{}", e.message);
        }
    }

    #[test]
    fn unknown_fields_are_ignored(
        extra in proptest::collection::btree_map("X[a-z]{1,8}", json(), 1..4),
    ) {
        let base = serde_json::json!({
            "Name": "web", "Driver": "bridge", "Labels": {"a": "b"},
            "IPAM": {"Config": [{"Subnet": "10.1.0.0/24"}]},
        });
        let mut with = base.clone();
        let obj = with.as_object_mut().expect("object");
        for (k, v) in &extra {
            obj.insert(k.clone(), v.clone());
        }
        let plain = networks::create_request(decode(base.to_string().as_bytes()).unwrap()).unwrap();
        let extended =
            networks::create_request(decode(with.to_string().as_bytes()).unwrap()).unwrap();
        prop_assert_eq!(plain, extended);
        // The same inside a nested object.
        let mut nested = base.clone();
        nested["IPAM"]["Config"][0]
            .as_object_mut()
            .expect("object")
            .extend(extra.clone());
        let n = networks::create_request(decode(nested.to_string().as_bytes()).unwrap()).unwrap();
        let subnet = n.ipam_config[0].subnet.map(|s| s.to_string());
        prop_assert_eq!(subnet.as_deref(), Some("10.1.0.0/24"));
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_declared_or_not() {
    let big = vec![b' '; crate::JSON_LIMIT + 1];
    let req = Request::builder()
        .method("POST")
        .uri("/networks/create")
        .header("content-length", big.len().to_string())
        .body(Body::from(big.clone()))
        .unwrap();
    let e =
        DockerJson::<cove_wire::NetworkCreateRequest>::from_request(req, &()).await.unwrap_err();
    assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    // No Content-Length (chunked): refused while reading.
    let stream = futures::stream::iter(
        big.chunks(1 << 20)
            .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    let req = Request::builder()
        .method("POST")
        .uri("/networks/create")
        .body(Body::from_stream(stream))
        .unwrap();
    let e =
        DockerJson::<cove_wire::NetworkCreateRequest>::from_request(req, &()).await.unwrap_err();
    assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(e.message.contains("16 MiB"), "{}", e.message);
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    let deep = format!("{{\"Name\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let e = decode::<cove_wire::NetworkCreateRequest>(deep.as_bytes()).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    let deep = format!("{{\"X\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
    // An unknown field is skipped without recursing: accepted, as dockerd would.
    if let Err(e) = decode::<cove_wire::NetworkCreateRequest>(deep.as_bytes()) {
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
