//! In-process coordination for grants: per-key locks and change notifications.
//!
//! Every state change of a grant appends a log leaf and then updates the row. A leaf
//! cannot be taken back, so two racing changes (an approval and the sweeper's timeout,
//! a release and a credential fetch) must not both decide from the same old state: the
//! read-check-record sequence of each change runs under the grant's lock. Idempotent
//! requests lock their key the same way, so one key can never create two grants.
//!
//! Long polls wait on their own grant's change counter, bumped after every committed
//! change of that grant; waiters re-read the grant when it moves. A change wakes only
//! the waiters of the grant that changed (one counter for all grants let any busy
//! tenant wake every long poll of every other, each paying a read). A grant's entry
//! exists only while someone waits on it and is removed with its last waiter.

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
static WAITERS: LazyLock<Waiters> = LazyLock::new(Waiters::default);
static WEBHOOKS: LazyLock<Notify> = LazyLock::new(Notify::new);

/// The lock for changes to grant `id`.
pub async fn lock_grant(id: &str) -> OwnedMutexGuard<()> {
    LOCKS.lock(&format!("grant:{id}")).await
}

/// The lock for an idempotency key of one agent.
pub async fn lock_idempotency(workspace: &str, agent: &str, key: &str) -> OwnedMutexGuard<()> {
    LOCKS.lock(&format!("idem:{workspace}:{agent}:{key}")).await
}

/// Change counters of the grants someone waits on. The counter's receivers are its
/// waiters, so the sender's `receiver_count` is the waiter count (no count of our own).
#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, watch::Sender<u64>>>,
}

/// One waiter on one grant. Dropping it removes the grant's entry with its last waiter.
pub struct Subscription<'a> {
    waiters: &'a Waiters,
    grant_id: String,
    rx: watch::Receiver<u64>,
}

impl Subscription<'_> {
    /// Resolves once the grant changed after this subscription was taken (or after the
    /// last call returned).
    pub async fn changed(&mut self) {
        // The sender lives in the map at least as long as this subscription.
        let _ = self.rx.changed().await;
    }

    /// Whether a change arrived that [`Self::changed`] has not yet returned for.
    pub fn has_changed(&self) -> bool {
        self.rx.has_changed().unwrap_or(false)
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        // Under the map's lock, so no subscriber can join between the count and the
        // removal; this subscription's own receiver is still counted here.
        let mut map = self.waiters.lock();
        if map.get(&self.grant_id).is_some_and(|tx| tx.receiver_count() <= 1) {
            map.remove(&self.grant_id);
        }
    }
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<u64>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe(&self, grant_id: &str) -> Subscription<'_> {
        let mut map = self.lock();
        let tx = map.entry(grant_id.to_string()).or_insert_with(|| watch::channel(0).0);
        Subscription {
            waiters: self,
            grant_id: grant_id.to_string(),
            rx: tx.subscribe(),
        }
    }

    /// Wakes the waiters of `grant_id`, if any; nobody else.
    pub fn changed(&self, grant_id: &str) {
        if let Some(tx) = self.lock().get(grant_id) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// How many grants have waiters (entries in the map).
    pub fn entries(&self) -> usize {
        self.lock().len()
    }
}

/// Subscribe to `grant_id` before reading it, so a change between the read and the
/// wait is not missed.
pub fn subscribe(grant_id: &str) -> Subscription<'static> {
    WAITERS.subscribe(grant_id)
}

/// Called after a change of `grant_id` is committed: wakes that grant's long polls and
/// the webhook sender.
pub fn changed(grant_id: &str) {
    WAITERS.changed(grant_id);
    WEBHOOKS.notify_one();
}

/// Grants with at least one long poll waiting (for `/metrics`).
pub fn waited_grants() -> usize {
    WAITERS.entries()
}

/// What the webhook sender waits on between rounds.
pub fn webhook_wakeup() -> &'static Notify {
    &WEBHOOKS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn only_the_changed_grants_waiters_wake() {
        let w = Waiters::default();
        let mut a1 = w.subscribe("g_a");
        let mut a2 = w.subscribe("g_a");
        let mut b = w.subscribe("g_b");
        w.changed("g_a");
        assert!(a1.has_changed() && a2.has_changed(), "both waiters of g_a wake");
        assert!(!b.has_changed(), "a waiter of g_b woke for a change of g_a");
        tokio::time::timeout(Duration::from_secs(5), a1.changed())
            .await
            .expect("a1 resolves");
        tokio::time::timeout(Duration::from_secs(5), a2.changed())
            .await
            .expect("a2 resolves");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), b.changed())
                .await
                .is_err(),
            "b must not resolve"
        );
        // A change with nobody waiting creates no entry.
        w.changed("g_nobody");
        assert_eq!(w.entries(), 2);
    }

    #[test]
    fn entries_are_removed_with_their_last_waiter() {
        let w = Waiters::default();
        let a1 = w.subscribe("g_a");
        let a2 = w.subscribe("g_a");
        let b = w.subscribe("g_b");
        assert_eq!(w.entries(), 2);
        drop(a1);
        assert_eq!(w.entries(), 2, "g_a still has a waiter");
        drop(a2);
        drop(b);
        assert_eq!(w.entries(), 0, "no waiter, no entry");
    }

    #[test]
    fn a_change_before_the_wait_is_not_missed() {
        let w = Waiters::default();
        let s = w.subscribe("g_a");
        w.changed("g_a");
        assert!(s.has_changed());
    }
}
