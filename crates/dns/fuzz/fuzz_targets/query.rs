//! FZ-1: arbitrary bytes as a client query (UDP and TCP). Oracles: no panic; a reply is a
//! well-formed response within the transport's size limit.
#![no_main]

use std::sync::{Arc, OnceLock};

use cove_dns::wire::{parse_query, MIN_UDP_SIZE};
use cove_dns::{Config, EndpointNames, Forward, Outcome, Resolver, SandboxView, Transport};
use libfuzzer_sys::fuzz_target;

fn resolver() -> &'static Arc<Resolver> {
    static R: OnceLock<Arc<Resolver>> = OnceLock::new();
    R.get_or_init(|| {
        let r = Resolver::new(Config::default());
        r.set_network("n1", "front");
        for (i, alias) in ["web", "www", "db"].iter().enumerate() {
            r.set_endpoint(
                "n1",
                EndpointNames {
                    endpoint_id: format!("e{i}"),
                    container_name: format!("c{i}"),
                    aliases: vec![alias.to_string()],
                    ipv4: Some([10, 1, 0, i as u8 + 2].into()),
                    ipv6: Some([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 2].into()),
                    ..EndpointNames::default()
                },
            );
        }
        r.set_sandbox(
            "sb",
            SandboxView {
                networks: vec!["n1".into()],
                forward: Forward::Upstream(vec!["192.0.2.53:53".parse().unwrap()]),
            },
        );
        r
    })
}

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    for t in [Transport::Udp, Transport::Tcp] {
        if let Outcome::Reply = resolver().respond("sb", data, t, &mut out) {
            let limit = match (t, parse_query(data)) {
                (Transport::Udp, Ok(q)) => q.max_udp_size(),
                (Transport::Udp, Err(_)) => MIN_UDP_SIZE,
                (Transport::Tcp, _) => 65535,
            };
            assert!(out.len() >= 12 && out.len() <= limit);
            assert!(out[2] & 0x80 != 0);
            assert!(hickory_proto::op::Message::from_vec(&out).is_ok());
        }
    }
});
