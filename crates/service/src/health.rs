//! Component health: each dependency (Kafka, ZooKeeper, MySQL, a node) is
//! reported ok or not, with a detail; `/health` answers 200 only when all are ok.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One component's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentHealth {
    /// Working.
    pub ok: bool,
    /// Why not, or a short status.
    pub detail: String,
}

/// The health of a service's components. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    components: Arc<Mutex<BTreeMap<String, ComponentHealth>>>,
}

impl Health {
    /// Records `component`'s state.
    pub fn set(&self, component: &str, ok: bool, detail: impl Into<String>) {
        let state = ComponentHealth {
            ok,
            detail: detail.into(),
        };
        self.lock().insert(component.to_owned(), state);
    }

    /// Whether every component is ok (and at least one reported).
    pub fn is_healthy(&self) -> bool {
        let map = self.lock();
        !map.is_empty() && map.values().all(|c| c.ok)
    }

    /// A copy of every component's state.
    pub fn snapshot(&self) -> BTreeMap<String, ComponentHealth> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ComponentHealth>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
