//! Which patient each record belongs to, remembered: a record never changes patient (updates
//! of another patient's record are refused), so a read by id can be decided before the store
//! is asked which patient it is.

use carechain_contracts::ResourceType;
use std::{collections::HashMap, sync::Mutex};

/// Entries kept by [`RecordPatients`] before it starts afresh.
const RECORD_PATIENTS_CAPACITY: usize = 200_000;

/// The patient of each record read recently (a record's patient never changes: updates of
/// another patient's record are refused).
#[derive(Debug, Default)]
pub struct RecordPatients {
    map: Mutex<HashMap<(ResourceType, String), String>>,
}

impl RecordPatients {
    pub(super) fn get(&self, resource_type: ResourceType, id: &str) -> Option<String> {
        self.lock().get(&(resource_type, id.to_owned())).cloned()
    }

    pub(super) fn remember(&self, resource_type: ResourceType, id: &str, patient: &str) {
        let mut map = self.lock();
        if map.len() >= RECORD_PATIENTS_CAPACITY {
            map.clear();
        }
        map.insert((resource_type, id.to_owned()), patient.to_owned());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(ResourceType, String), String>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
