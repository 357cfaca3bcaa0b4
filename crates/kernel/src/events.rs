//! Changes to the host's links that someone else made, as a signal to reconcile.
//!
//! The executor never deletes a link of Cove's group directly: it condemns it first (moves
//! it to the retired group), and the reaper deletes retired links. So a bridge or VXLAN
//! device that vanishes while still in Cove's group was deleted by someone else (an
//! admin's `ip link del`), and the host may now differ from the records. Veths are left
//! out: their host ends go with every sandbox torn down.

use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{AsyncSocket, SocketAddr};
use tokio::sync::mpsc;
use tracing::debug;

use cove_plan::OWNED_LINK_GROUP;

use crate::error::Cause;

/// `RTMGRP_LINK`: link notifications.
const RTMGRP_LINK: u32 = 1;

/// Subscribe to link notifications in the calling thread's netns; every removal of a link
/// in Cove's group sends `()` (coalesced: a full channel drops the extra signal, one
/// pending signal is enough to trigger one reconciliation). Ends when the receiver is
/// dropped.
pub(crate) fn owned_link_removals(
    rt: &tokio::runtime::Handle,
) -> Result<mpsc::Receiver<()>, Cause> {
    let _enter = rt.enter();
    let (mut conn, _handle, mut messages) = rtnetlink::new_connection()?;
    conn.socket_mut().socket_mut().bind(&SocketAddr::new(0, RTMGRP_LINK))?;
    rt.spawn(conn);
    let (tx, rx) = mpsc::channel(1);
    rt.spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) = msg.payload
            else {
                continue;
            };
            if crate::nl::link_group(&link) != OWNED_LINK_GROUP {
                continue;
            }
            // A veth's host end goes with its sandbox's namespace, thousands of times a day
            // on a busy host, and the diff never re-creates one (its peer is gone): only the
            // networks' own links (bridges, VXLAN devices) are worth a reconciliation.
            if crate::nl::link_info(&link).kind.as_deref() == Some("veth") {
                continue;
            }
            debug!(index = link.header.index, "a link of Cove's group was deleted");
            if let Err(mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                return;
            }
        }
    });
    Ok(rx)
}
