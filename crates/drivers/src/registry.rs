//! Drivers by name: the built-in ones, and room for drivers that live out of process.

use std::collections::BTreeMap;
use std::sync::Arc;

use cove_model::{Error, NetworkRecord, Result};

use crate::driver::NetworkDriver;

/// The network drivers a daemon hosts, by the name users give with `-d`.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    drivers: BTreeMap<String, Arc<dyn NetworkDriver>>,
}

impl Registry {
    /// The built-in drivers: `bridge`, `host`, `null`, `overlay`.
    pub fn builtin() -> Self {
        let mut r = Registry::default();
        r.register(Arc::new(crate::bridge::BridgeDriver));
        r.register(Arc::new(crate::builtin::HostDriver));
        r.register(Arc::new(crate::builtin::NullDriver));
        r.register(Arc::new(crate::overlay::OverlayDriver));
        r
    }

    /// Add (or replace) a driver under its name.
    pub fn register(&mut self, driver: Arc<dyn NetworkDriver>) {
        self.drivers.insert(driver.name().to_string(), driver);
    }

    /// The driver users call `name` (empty: Docker's default, `bridge`). Unknown names are
    /// Docker's 404 for a plugin that is not there.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn NetworkDriver>> {
        let name = if name.is_empty() { crate::DEFAULT_DRIVER } else { name };
        self.drivers.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.drivers.keys().map(String::as_str).collect();
            Error::not_found(format!(
                "plugin \"{name}\" not found: unknown network driver (supported: {})",
                known.join(", ")
            ))
        })
    }

    /// The driver of a stored network.
    pub fn of(&self, net: &NetworkRecord) -> Result<&Arc<dyn NetworkDriver>> {
        self.drivers.get(&net.driver).ok_or_else(|| {
            Error::unavailable(format!(
                "network {}: its driver \"{}\" is not available",
                net.name, net.driver
            ))
        })
    }

    /// Names of the registered drivers.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.drivers.keys().map(String::as_str)
    }
}
