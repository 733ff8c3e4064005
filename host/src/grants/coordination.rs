//! In-process coordination for grants: per-key locks and change notifications.
//!
//! Every state change of a grant appends a log leaf and then updates the row. A leaf
//! cannot be taken back, so two racing changes (an approval and the sweeper's timeout,
//! a release and a credential fetch) must not both decide from the same old state: the
//! read-check-record sequence of each change runs under the grant's lock. Idempotent
//! requests lock their key the same way, so one key can never create two grants.
//!
//! Long polls wait on a change counter bumped after every committed change; waiters
//! re-read their grant when it moves. One counter for all grants keeps it simple: a
//! wake-up costs one indexed read, and grants change rarely.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use tokio::sync::{watch, Notify, OwnedMutexGuard};

#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    /// Waits for and takes the lock named `key`.
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() > 1024 {
                map.retain(|_, w| w.strong_count() > 0);
            }
            match map.get(key).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

static LOCKS: LazyLock<KeyedLocks> = LazyLock::new(KeyedLocks::default);
static CHANGES: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);
static WEBHOOKS: LazyLock<Notify> = LazyLock::new(Notify::new);

/// The lock for changes to grant `id`.
pub async fn lock_grant(id: &str) -> OwnedMutexGuard<()> {
    LOCKS.lock(&format!("grant:{id}")).await
}

/// The lock for an idempotency key of one agent.
pub async fn lock_idempotency(workspace: &str, agent: &str, key: &str) -> OwnedMutexGuard<()> {
    LOCKS.lock(&format!("idem:{workspace}:{agent}:{key}")).await
}

/// Subscribe before reading, so a change between the read and the wait is not missed.
pub fn subscribe() -> watch::Receiver<u64> {
    CHANGES.subscribe()
}

/// Called after a change is committed: wakes long polls and the webhook sender.
pub fn changed() {
    CHANGES.send_modify(|n| *n = n.wrapping_add(1));
    WEBHOOKS.notify_one();
}

/// What the webhook sender waits on between rounds.
pub fn webhook_wakeup() -> &'static Notify {
    &WEBHOOKS
}
