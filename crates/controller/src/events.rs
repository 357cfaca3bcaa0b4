//! Docker's event stream (`GET /events`): what happened to networks and containers, in
//! order. Every event goes to a broadcast channel (live subscribers) and to a bounded ring
//! of recent events (so `since` can replay the past, as dockerd keeps its last 1024).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use cove_model::{ContainerRecord, NetworkRecord};
use tokio::sync::broadcast;

use crate::state::State;
use crate::Controller;

/// How many past events are kept for `since` (dockerd's number).
const RECENT: usize = 1024;

/// What kind of object an event is about (Docker's `Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `container`.
    Container,
    /// `network`.
    Network,
    /// `image`.
    Image,
}

impl EventType {
    /// Docker's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Container => "container",
            EventType::Network => "network",
            EventType::Image => "image",
        }
    }
}

/// One event: Docker's `events.Message` without the encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `Type`.
    pub kind: EventType,
    /// `Action` (`create`, `connect`, `die`, ...).
    pub action: String,
    /// `Actor.ID`: the object's full id.
    pub id: String,
    /// `Actor.Attributes` (`name`, `type`, `container`, `image`, `exitCode`, labels).
    pub attributes: BTreeMap<String, String>,
    /// When it happened, nanoseconds since the epoch.
    pub time_nano: i64,
}

/// The event bus: a broadcast channel and the recent past.
#[derive(Debug)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<Event>,
    recent: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self { tx: broadcast::channel(RECENT).0, recent: Mutex::new(VecDeque::new()) }
    }
}

impl EventBus {
    /// Record and broadcast one event. The ring's lock is held while sending, so a
    /// subscriber (which takes the same lock) sees every event exactly once: either in its
    /// copy of the past or on its channel.
    pub(crate) fn emit(&self, ev: Event) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(ev.clone());
        let _ = self.tx.send(ev);
    }

    /// How many subscribers are listening now.
    pub(crate) fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The recent past and a receiver of what comes after it.
    pub(crate) fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        (recent.iter().cloned().collect(), self.tx.subscribe())
    }
}

fn now_nanos() -> i64 {
    let now = chrono::Utc::now();
    now.timestamp_nanos_opt().unwrap_or_else(|| now.timestamp().saturating_mul(1_000_000_000))
}

/// Docker's attributes of a container event: its labels, then `image` and `name`.
fn container_attributes(c: &ContainerRecord) -> BTreeMap<String, String> {
    let mut a = c.config.labels.clone();
    a.insert("image".into(), c.config.image.clone());
    a.insert("name".into(), c.name.clone());
    a
}

impl Controller {
    /// Subscribe to events: the recent past (at most 1024, oldest first) and a receiver of
    /// every later one. A receiver that falls more than 1024 events behind loses the oldest
    /// (`RecvError::Lagged`).
    pub fn events_subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        self.events.subscribe()
    }

    /// How many event streams are open (`NEventsListener` of `GET /info`).
    pub fn events_listeners(&self) -> usize {
        self.events.listeners()
    }

    /// A container event (`create`, `start`, `kill`, `die`, `stop`, `restart`, `destroy`)
    /// with `extra` attributes (`exitCode`, `signal`).
    pub(crate) fn container_event(
        &self,
        c: &ContainerRecord,
        action: &str,
        extra: &[(&str, &str)],
    ) {
        let mut attributes = container_attributes(c);
        for (k, v) in extra {
            attributes.insert((*k).into(), (*v).into());
        }
        self.events.emit(Event {
            kind: EventType::Container,
            action: action.into(),
            id: c.id.to_string(),
            attributes,
            time_nano: now_nanos(),
        });
    }

    /// [`Controller::container_event`] for a container reference (nothing if it is gone).
    pub(crate) async fn container_event_by_id(
        &self,
        reference: &str,
        action: &str,
        extra: &[(&str, &str)],
    ) {
        let st = self.state.lock().await;
        if let Ok(c) = st.container(reference) {
            self.container_event(c, action, extra);
        }
    }

    /// `connect`/`disconnect` network events for each network of a container whose sandbox
    /// was just set up or released (as dockerd sends them on start and exit).
    pub(crate) fn sandbox_events(&self, st: &State, c: &ContainerRecord, action: &str) {
        for (id, _) in &c.networks {
            if let Some(n) = st.networks.get(id) {
                self.network_event(n, action, Some(&c.id));
            }
        }
    }

    /// A network event: `create`, `destroy`, or `connect`/`disconnect` of `container`.
    pub(crate) fn network_event(&self, n: &NetworkRecord, action: &str, container: Option<&str>) {
        let mut attributes = BTreeMap::from([
            ("name".to_string(), n.name.clone()),
            ("type".to_string(), n.driver.as_str().to_string()),
        ]);
        if let Some(c) = container {
            attributes.insert("container".into(), c.into());
        }
        self.events.emit(Event {
            kind: EventType::Network,
            action: action.into(),
            id: n.id.to_string(),
            attributes,
            time_nano: now_nanos(),
        });
    }

    /// An image event (`load`, `import`, `delete`, `untag`, `tag`) for image `id` named `name`.
    pub(crate) fn image_event(&self, id: &str, name: &str, action: &str) {
        self.events.emit(Event {
            kind: EventType::Image,
            action: action.into(),
            id: id.into(),
            attributes: BTreeMap::from([("name".to_string(), name.to_string())]),
            time_nano: now_nanos(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str) -> Event {
        Event {
            kind: EventType::Network,
            action: action.into(),
            id: "n".into(),
            attributes: BTreeMap::new(),
            time_nano: 1,
        }
    }

    #[test]
    fn subscribers_see_the_past_then_the_future_once() {
        let bus = EventBus::default();
        bus.emit(ev("create"));
        let (past, mut rx) = bus.subscribe();
        assert_eq!(past, vec![ev("create")]);
        bus.emit(ev("destroy"));
        assert_eq!(rx.try_recv().unwrap(), ev("destroy"));
        assert!(rx.try_recv().is_err());
        assert_eq!(bus.listeners(), 1);
        drop(rx);
        assert_eq!(bus.listeners(), 0);
    }

    #[test]
    fn the_past_is_bounded() {
        let bus = EventBus::default();
        for i in 0..RECENT + 10 {
            bus.emit(ev(&i.to_string()));
        }
        let (past, _) = bus.subscribe();
        assert_eq!(past.len(), RECENT);
        assert_eq!(past[0].action, "10");
        assert_eq!(EventType::Container.as_str(), "container");
    }
}
