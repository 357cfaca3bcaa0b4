//! The floor: what the kernel needs for an attach, done in-process with no daemon and no
//! store. [`Floor`] is the sandbox Cove builds (netns, veth with the peer created inside,
//! address, up, default route) over netlink, torn down by unmounting the netns.
//! [`NftFloor`] is one published port: one DNAT map element added with one `nft -f -`
//! transaction, in a small table of the floor's own.

use anyhow::Result;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use cove_drivers::plan::{Netns, Op};
use cove_firewall::netlink::{Element, SetElements};
use cove_kernel::Kernel;
use cove_model::MacAddr;

pub(crate) struct Floor {
    kernel: Kernel,
    dir: PathBuf,
    n: u32,
}

impl Floor {
    pub(crate) async fn new(dir: &Path) -> Result<Self> {
        let kernel = Kernel::new().await?;
        kernel
            .apply(&[
                // Not in Cove's link group: the daemon beside the floor would take it for
                // an orphan of its own.
                Op::CreateBridge {
                    name: "flbr0".into(),
                    group: 0,
                    mtu: 1500,
                    mac: MacAddr([2, 0x42, 9, 9, 9, 9]),
                },
                Op::AddAddress {
                    netns: Netns::Host,
                    link: "flbr0".into(),
                    addr: "10.250.0.1/16".parse()?,
                },
                Op::SetUp { netns: Netns::Host, link: "flbr0".into() },
            ])
            .await?;
        Ok(Self { kernel, dir: dir.to_path_buf(), n: 0 })
    }

    /// The sandbox's netns path and its address.
    pub(crate) async fn attach(&mut self) -> Result<(PathBuf, Ipv4Addr)> {
        self.n += 1;
        let path = self.dir.join(format!("fl{}", self.n));
        let ip = Ipv4Addr::new(10, 250, (self.n / 250) as u8 + 1, (self.n % 250) as u8 + 2);
        self.kernel.create_netns(&path).await?;
        let sb = Netns::Path(path.clone());
        self.kernel
            .apply(&[
                Op::CreateVeth {
                    host_name: format!("fl{:010x}", rand::random::<u64>() & 0xff_ffff_ffff),
                    group: 0,
                    bridge: "flbr0".into(),
                    mtu: 1500,
                    peer_name: "eth0".into(),
                    peer_netns: path.clone(),
                    peer_mac: MacAddr::from_ipv4(ip),
                },
                Op::AddAddress {
                    netns: sb.clone(),
                    link: "eth0".into(),
                    addr: ipnet::IpNet::new(ip.into(), 16)?,
                },
                Op::SetUp { netns: sb.clone(), link: "eth0".into() },
                Op::AddRoute {
                    netns: sb,
                    dst: "0.0.0.0/0".parse()?,
                    gateway: Some("10.250.0.1".parse()?),
                    link: "eth0".into(),
                },
            ])
            .await?;
        Ok((path, ip))
    }

    pub(crate) async fn detach(&self, path: &Path) -> Result<()> {
        self.kernel.remove_netns(path).await?;
        Ok(())
    }

    /// Remove the floor's bridge (its sandboxes are gone by then).
    pub(crate) async fn remove(self) {
        let _ = self
            .kernel
            .teardown(&[Op::DeleteLink { netns: Netns::Host, name: "flbr0".into() }])
            .await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The floor's nftables table (not Cove's: the daemon never touches it, and its watch on
/// `inet cove` ignores it).
const TABLE: &str = "inet coveflr";
const TABLE_NAME: &str = "coveflr";

/// A published port at the floor: one element of a DNAT map like Cove's `dnat4_any`,
/// used by a DNAT rule like Cove's, in a table of its own. Two ways to add it: one
/// `NFT_MSG_NEWSETELEM` batch over netlink from this process (the least the kernel needs;
/// what Cove's daemon does), and one `nft -f -` process per transaction (for reference).
pub(crate) struct NftFloor {
    writer: cove_kernel::nfnl::ElementWriter,
}

impl NftFloor {
    pub(crate) async fn create() -> Result<Self> {
        cove_kernel::nft::apply(&format!(
            "table {TABLE} {{\n\
             \tmap dnat4_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             \tchain nat_prerouting {{\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\tfib daddr type local meta nfproto ipv4 dnat ip to meta l4proto . th dport map @dnat4_any\n\
             \t}}\n\
             }}\n"
        ))
        .await?;
        Ok(Self { writer: cove_kernel::nfnl::ElementWriter::spawn()? })
    }

    fn element(port: u16, ip: Ipv4Addr) -> String {
        format!("{TABLE} dnat4_any {{ tcp . {port} : {ip} . 80 }}")
    }

    /// The netlink form of the element (`delete`: by its key alone).
    fn batch(port: u16, ip: Ipv4Addr, delete: bool) -> Vec<SetElements> {
        let p = port.to_be_bytes();
        let o = ip.octets();
        vec![SetElements {
            family: cove_firewall::netlink::NFPROTO_INET,
            table: TABLE_NAME,
            set: "dnat4_any",
            delete,
            elements: vec![Element {
                key: vec![6, 0, 0, 0, p[0], p[1], 0, 0],
                data: (!delete).then(|| vec![o[0], o[1], o[2], o[3], 0, 80, 0, 0]),
            }],
        }]
    }

    /// Publish `port` to `ip`:80: one transaction over netlink.
    pub(crate) async fn add(&mut self, port: u16, ip: Ipv4Addr) -> Result<()> {
        self.writer.apply(Self::batch(port, ip, false)).await?;
        Ok(())
    }

    /// The same with one `nft -f -` process.
    pub(crate) async fn add_exec(&self, port: u16, ip: Ipv4Addr) -> Result<()> {
        cove_kernel::nft::apply(&format!("add element {}\n", Self::element(port, ip))).await?;
        Ok(())
    }

    pub(crate) async fn delete(&mut self, port: u16, ip: Ipv4Addr) -> Result<()> {
        self.writer.apply(Self::batch(port, ip, true)).await?;
        Ok(())
    }

    pub(crate) async fn remove(self) -> Result<()> {
        drop(self.writer);
        cove_kernel::nft::apply(&format!("delete table {TABLE}\n")).await?;
        Ok(())
    }
}
