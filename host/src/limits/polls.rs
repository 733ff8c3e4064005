//! Caps on long polls held open at once, per API key and in total. A long poll costs
//! a task, a connection and a wake-up per change of its grant; without a cap one key
//! could hold thousands open. Over a cap the poll is answered 429 at once (the client
//! can poll again without `wait`, or later).

use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

struct State {
    per_key: HashMap<String, u32>,
    total: u32,
}

pub struct Polls {
    max_per_key: u32,
    max_total: u32,
    state: Mutex<State>,
    refused_key: AtomicU64,
    refused_global: AtomicU64,
}

/// One open long poll; dropping it frees the slot (and the key's entry at zero).
pub struct Slot {
    polls: Arc<Polls>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.polls.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_key.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_key.remove(&self.key);
            }
        }
    }
}

impl Polls {
    /// `0` for either cap turns it off.
    pub fn new(max_per_key: u32, max_total: u32) -> Self {
        Self {
            max_per_key,
            max_total,
            state: Mutex::new(State {
                per_key: HashMap::new(),
                total: 0,
            }),
            refused_key: AtomicU64::new(0),
            refused_global: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot for a long poll by `key_id`, or refuses with 429.
    pub fn acquire(self: &Arc<Self>, key_id: &str) -> Result<Slot, ApiError> {
        let mut s = self.lock();
        let mine = s.per_key.get(key_id).copied().unwrap_or(0);
        if self.max_total > 0 && s.total >= self.max_total {
            self.refused_global.fetch_add(1, Ordering::Relaxed);
            return Err(refusal(format!(
                "the host holds its maximum of {} long polls (--max-polls); poll without wait, or retry later",
                self.max_total
            )));
        }
        if self.max_per_key > 0 && mine >= self.max_per_key {
            self.refused_key.fetch_add(1, Ordering::Relaxed);
            return Err(refusal(format!(
                "this API key already holds {mine} long polls, the maximum (--max-polls-per-key); \
                 wait for one to return before starting another"
            )));
        }
        s.total += 1;
        s.per_key.insert(key_id.to_string(), mine + 1);
        Ok(Slot {
            polls: self.clone(),
            key: key_id.to_string(),
        })
    }

    /// `(refused at the per-key cap, refused at the global cap)`.
    pub fn refusals(&self) -> (u64, u64) {
        (
            self.refused_key.load(Ordering::Relaxed),
            self.refused_global.load(Ordering::Relaxed),
        )
    }

    pub fn open(&self) -> u64 {
        self.lock().total as u64
    }
}

fn refusal(message: String) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: 1,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_poll_cap_per_key_and_global() {
        let p = Arc::new(Polls::new(2, 3));
        let a1 = p.acquire("a").expect("first");
        let _a2 = p.acquire("a").expect("second");
        assert!(
            matches!(p.acquire("a"), Err(ApiError::RateLimited { .. })),
            "third of one key"
        );
        let _b1 = p.acquire("b").expect("another key");
        assert!(
            matches!(p.acquire("c"), Err(ApiError::RateLimited { .. })),
            "global cap"
        );
        assert_eq!(p.refusals(), (1, 1));
        drop(a1);
        let _c1 = p.acquire("c").expect("a slot was freed");
        assert_eq!(p.open(), 3);
    }

    #[test]
    fn freed_keys_leave_no_entry() {
        let p = Arc::new(Polls::new(2, 0));
        drop(p.acquire("gone").expect("slot"));
        assert!(p.lock().per_key.is_empty());
        assert_eq!(p.open(), 0);
    }
}
