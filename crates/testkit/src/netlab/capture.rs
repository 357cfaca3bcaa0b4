//! Counting frames on the underlay switch: nft counters in the switch's bridge table
//! (no capture tool needed; the count is exact and costs nothing per frame).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::Netlab;

/// Which frames on the underlay switch a counter counts (see [`Netlab::count_frames`]).
///
/// Without [`Frames::to`], a frame is counted once as it **enters** the switch (before any
/// partition drops it): what was sent. With [`Frames::to`], it is counted as it **leaves**
/// the switch by that node's port (after partitions): what was delivered there; a frame the
/// switch floods counts once at each port it leaves by.
///
/// ```
/// use cove_testkit::{Frames, Netlab};
/// // VXLAN datagrams h1 sent to h2's address, and anything delivered to h3.
/// let sent = Frames::any().from("h1").dst(Netlab::host_addr(2)).udp_dport(4789);
/// let to_h3 = Frames::any().to("h3");
/// # let _ = (sent, to_h3);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frames {
    from: Option<String>,
    to: Option<String>,
    matches: Vec<String>,
}

impl Frames {
    /// Every frame.
    pub fn any() -> Frames {
        Frames::default()
    }

    /// Frames entering the switch from `node`'s port.
    pub fn from(mut self, node: &str) -> Frames {
        self.from = Some(node.to_string());
        self
    }

    /// Frames leaving the switch by `node`'s port (delivered to it).
    pub fn to(mut self, node: &str) -> Frames {
        self.to = Some(node.to_string());
        self
    }

    /// IPv4 packets from `addr`.
    pub fn src(self, addr: Ipv4Addr) -> Frames {
        self.matching(&format!("ip saddr {addr}"))
    }

    /// IPv4 packets to `addr`.
    pub fn dst(self, addr: Ipv4Addr) -> Frames {
        self.matching(&format!("ip daddr {addr}"))
    }

    /// UDP datagrams to port `port`.
    pub fn udp_dport(self, port: u16) -> Frames {
        self.matching(&format!("udp dport {port}"))
    }

    /// TCP segments to port `port`.
    pub fn tcp_dport(self, port: u16) -> Frames {
        self.matching(&format!("tcp dport {port}"))
    }

    /// VXLAN: UDP datagrams to port 4789.
    pub fn vxlan(self) -> Frames {
        self.udp_dport(4789)
    }

    /// Frames matching the nft expression `expr` as well (bridge family, e.g.
    /// `arp operation request`, `ip frag-off & 0x3fff != 0`, `ether type ip6`).
    pub fn matching(mut self, expr: &str) -> Frames {
        self.matches.push(expr.to_string());
        self
    }

    /// The nodes this filter names.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &str> {
        self.from.iter().chain(self.to.iter()).map(String::as_str)
    }

    /// `(chain, nft expression)`, the nodes' ports looked up with `port`.
    pub(crate) fn render(&self, port: &dyn Fn(&str) -> Option<String>) -> (&'static str, String) {
        let mut parts = Vec::new();
        // A node without a port (never attached) matches nothing: a name no link has.
        let name = |n: &str| port(n).unwrap_or_else(|| "netlab-none".into());
        if let Some(n) = &self.from {
            parts.push(format!("iifname \"{}\"", name(n)));
        }
        if let Some(n) = &self.to {
            parts.push(format!("oifname \"{}\"", name(n)));
        }
        parts.extend(self.matches.iter().cloned());
        let chain = if self.to.is_some() { "post" } else { "pre" };
        (chain, parts.join(" "))
    }
}

/// A counter of frames on the underlay switch (see [`Netlab::add_counter`]).
#[derive(Debug)]
pub struct FrameCounter {
    id: u32,
}

impl Netlab {
    /// Start counting `frames` on the underlay switch until [`Netlab::remove_counter`]
    /// (or the end of the netlab). Counting continues across partitions and reboots.
    #[track_caller]
    pub fn add_counter(&self, frames: &Frames) -> FrameCounter {
        for n in frames.nodes() {
            assert!(self.switch.port(n).is_some(), "netlab: no node {n} on the switch");
        }
        FrameCounter { id: self.switch.add_counter(frames) }
    }

    /// Frames counted so far by `counter`.
    #[track_caller]
    pub fn counted(&self, counter: &FrameCounter) -> u64 {
        self.switch.read_counters(&[counter.id])[0]
    }

    /// Stop counting and remove the counter.
    pub fn remove_counter(&self, counter: FrameCounter) {
        self.switch.remove_counter(counter.id);
    }

    /// Count frames matching each of `filters` while `f` runs: counters made before, read
    /// once the counts have settled after `f` returned (frames still in flight arrive
    /// within milliseconds), then removed. Returns what `f` returned and one count per
    /// filter.
    ///
    /// ```no_run
    /// # fn t(lab: &cove_testkit::Netlab) {
    /// use cove_testkit::{Frames, Netlab};
    /// let h2 = Netlab::host_addr(2);
    /// let ((), counts) = lab.count_frames(
    ///     &[Frames::any().from("h1").dst(h2).vxlan(), Frames::any().to("h3").vxlan()],
    ///     || { /* make h1 send to h2 */ },
    /// );
    /// assert_eq!(counts[1], 0, "no VXLAN datagram reached h3");
    /// # }
    /// ```
    #[track_caller]
    pub fn count_frames<T>(&self, filters: &[Frames], f: impl FnOnce() -> T) -> (T, Vec<u64>) {
        let counters: Vec<FrameCounter> = filters.iter().map(|fr| self.add_counter(fr)).collect();
        let ids: Vec<u32> = counters.iter().map(|c| c.id).collect();
        let value = f();
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut counts = self.switch.read_counters(&ids);
        loop {
            std::thread::sleep(Duration::from_millis(30));
            let again = self.switch.read_counters(&ids);
            if again == counts || Instant::now() > deadline {
                counts = again;
                break;
            }
            counts = again;
        }
        for c in counters {
            self.remove_counter(c);
        }
        (value, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_follow_the_direction() {
        let port = |n: &str| (n != "ghost").then(|| format!("p-{n}"));
        let f = Frames::any().from("h1").src(Ipv4Addr::new(203, 0, 113, 11)).tcp_dport(80);
        assert_eq!(
            f.render(&port),
            ("pre", "iifname \"p-h1\" ip saddr 203.0.113.11 tcp dport 80".to_string())
        );
        let f = Frames::any().from("h1").to("h2").vxlan();
        assert_eq!(
            f.render(&port),
            ("post", "iifname \"p-h1\" oifname \"p-h2\" udp dport 4789".to_string())
        );
        assert_eq!(Frames::any().to("ghost").render(&port).1, "oifname \"netlab-none\"");
        assert_eq!(Frames::any().render(&port), ("pre", String::new()));
        assert_eq!(Frames::any().from("a").to("b").nodes().collect::<Vec<_>>(), ["a", "b"]);
    }
}
