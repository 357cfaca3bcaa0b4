//! The guards of encrypted overlay networks (issue 18): plaintext VXLAN of an encrypted
//! network never leaves the host, never enters it, and no local process can hand-craft it.
//!
//! An encrypted network's VXLAN device sends from the host's tunnel address to peers'
//! tunnel addresses, so the kernel routes its datagrams into the tunnel device (`cvwg0`),
//! where the daemon encrypts them; decrypted datagrams come back out of that device. These
//! rules hold that shape whatever else happens (a route changed, the device gone, a forged
//! datagram), each with a named counter, in chains of their own in `table inet cove`:
//!
//! * `enc_in` (prerouting, before everything else of Cove's): VXLAN of an encrypted VNI
//!   that did not arrive through the tunnel device is dropped (`drop_vxlan_plain_in`).
//!   Installed with the network, before any endpoint or peer exists (CVE-2023-28842).
//! * `enc_out` (postrouting, locally sent and forwarded alike):
//!   - VXLAN of an encrypted VNI sent from a user-space socket is dropped
//!     (`drop_vxlan_local`): the kernel's VXLAN device transmits without a socket of
//!     its own on the packet (`meta skuid` finds no socket), a process's datagram always
//!     has one, root's included. So no process can hand the tunnel VXLAN to encrypt and
//!     deliver to another host. (Packets a host process sends *into* an encrypted network
//!     through its bridge carry that process's socket too, and are dropped the same way:
//!     the host itself cannot talk to containers of an encrypted network on other hosts,
//!     as with Docker, whose overlays the host cannot reach at all.)
//!   - VXLAN of an encrypted VNI leaving by any interface but the tunnel device is dropped
//!     (`drop_vxlan_plain_out`).
//!
//! The VNI is bits 32-55 of the VXLAN header that follows the 8-byte UDP header:
//! `@th,96,24`. The encrypted VNIs are a named set (`encrypted_vnis`); the chains exist
//! whenever the host has a tunnel, with an empty set when no network is encrypted.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::ruleset::Chain;

/// The chain of the ingress guard.
pub const CHAIN_ENC_IN: &str = "enc_in";
/// The chain of the egress and local-injection guards.
pub const CHAIN_ENC_OUT: &str = "enc_out";
/// The VNIs of encrypted networks (integers, 24 bits).
pub const SET_ENCRYPTED_VNIS: &str = "encrypted_vnis";
/// Cleartext VXLAN of an encrypted network that arrived by another interface than the
/// tunnel device (forged, or sent by a host that lost its tunnel).
pub const COUNTER_DROP_VXLAN_PLAIN_IN: &str = "drop_vxlan_plain_in";
/// VXLAN of an encrypted network about to leave by another interface than the tunnel
/// device.
pub const COUNTER_DROP_VXLAN_PLAIN_OUT: &str = "drop_vxlan_plain_out";
/// VXLAN of an encrypted network sent from a user-space socket (local injection).
pub const COUNTER_DROP_VXLAN_LOCAL: &str = "drop_vxlan_local";
/// The counters of the guards.
pub const ENCRYPTION_COUNTERS: &[&str] =
    &[COUNTER_DROP_VXLAN_PLAIN_IN, COUNTER_DROP_VXLAN_PLAIN_OUT, COUNTER_DROP_VXLAN_LOCAL];

/// What the guards need: the tunnel device, the VXLAN port and the encrypted networks'
/// VNIs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionGuard {
    /// The tunnel device (`cvwg0`): the only interface encrypted VXLAN may use.
    pub device: String,
    /// The VXLAN UDP port (`--data-path-port`).
    pub port: u16,
    /// The VNIs of the encrypted networks this host knows (with or without endpoints).
    pub vnis: Vec<u32>,
}

/// The named counters and the VNI set, as declarations inside `table inet cove`.
pub(crate) fn declarations(g: &EncryptionGuard) -> String {
    let mut out = String::new();
    for c in ENCRYPTION_COUNTERS {
        let _ = writeln!(out, "\tcounter {c} {{}}");
    }
    let mut vnis: Vec<u32> = g.vnis.iter().copied().filter(|v| *v < 1 << 24).collect();
    vnis.sort_unstable();
    vnis.dedup();
    let _ = writeln!(out, "\n\tset {SET_ENCRYPTED_VNIS} {{\n\t\ttypeof @th,96,24");
    if !vnis.is_empty() {
        let items: Vec<String> = vnis.iter().map(u32::to_string).collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", items.join(", "));
    }
    out.push_str("\t}\n");
    out
}

/// The guard chains.
pub(crate) fn chains(g: &EncryptionGuard) -> Vec<Chain> {
    let vxlan = format!("udp dport {} @th,96,24 @{SET_ENCRYPTED_VNIS}", g.port);
    let dev = &g.device;
    let drop = |c: &str| format!("counter name \"{c}\" drop");
    vec![
        Chain {
            name: CHAIN_ENC_IN.into(),
            // Before raw_prerouting (-300): a forged datagram is counted here, whoever
            // sent it, and never reaches conntrack or the VXLAN socket.
            hook: "type filter hook prerouting priority -310; policy accept;".into(),
            rules: vec![
                "# cleartext VXLAN of an encrypted network only from the tunnel device".into(),
                format!("{vxlan} iifname != \"{dev}\" {}", drop(COUNTER_DROP_VXLAN_PLAIN_IN)),
            ],
        },
        Chain {
            name: CHAIN_ENC_OUT.into(),
            hook: "type filter hook postrouting priority filter; policy accept;".into(),
            rules: vec![
                "# no process (root included) hands the tunnel VXLAN to encrypt: the kernel's"
                    .into(),
                "# VXLAN device sends without a socket on the packet, a process never does".into(),
                format!("{vxlan} meta skuid >= 0 {}", drop(COUNTER_DROP_VXLAN_LOCAL)),
                "# VXLAN of an encrypted network leaves through the tunnel device or not at all"
                    .into(),
                format!("{vxlan} oifname != \"{dev}\" {}", drop(COUNTER_DROP_VXLAN_PLAIN_OUT)),
            ],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(vnis: Vec<u32>) -> EncryptionGuard {
        EncryptionGuard { device: "cvwg0".into(), port: 4789, vnis }
    }

    #[test]
    fn the_set_holds_each_vni_once_in_order() {
        let d = declarations(&guard(vec![4097, 4096, 4097]));
        assert!(d.contains("elements = { 4096, 4097 }"), "{d}");
        assert!(d.contains("typeof @th,96,24"), "{d}");
        for c in ENCRYPTION_COUNTERS {
            assert!(d.contains(&format!("counter {c} {{}}")), "{d}");
        }
        // No encrypted network yet: the set is there, empty, and so are the rules.
        let d = declarations(&guard(vec![]));
        assert!(!d.contains("elements"), "{d}");
        assert_eq!(chains(&guard(vec![])).len(), 2);
    }

    #[test]
    fn every_guard_only_drops_and_counts() {
        for c in chains(&guard(vec![4096])) {
            for r in c.rules.iter().filter(|r| !r.starts_with('#')) {
                assert!(r.contains("@th,96,24 @encrypted_vnis") && r.ends_with(" drop"), "{r}");
                assert!(r.contains("counter name \"drop_vxlan_"), "{r}");
            }
        }
    }
}
