//! A cap on requests of one kind in flight at once, across every caller. Per-address
//! rates (`rate`) bound what one client may ask, but not the sum over many addresses;
//! for work that lands on the enclave on behalf of unauthenticated callers (an
//! attestation is an NSM call and a signature in the enclave), this cap bounds that
//! sum: however many addresses ask, at most `max` such requests reach the enclave at
//! once, and the rest are answered 429 at once instead of queueing.

use crate::error::ApiError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct InFlight {
    /// `None` when the cap is off (`0`).
    slots: Option<Arc<Semaphore>>,
    max: u32,
    what: &'static str,
    flag: &'static str,
    refused: AtomicU64,
}

/// One request in flight; dropping it (the handler returning) frees the slot.
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    /// `max` requests of `what` at once (`0` turns the cap off); `flag` sets it.
    pub fn new(max: u32, what: &'static str, flag: &'static str) -> Self {
        Self {
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max as usize))),
            max,
            what,
            flag,
            refused: AtomicU64::new(0),
        }
    }

    /// Takes a slot, or refuses with 429 `RATE_LIMITED` when all are taken.
    pub fn acquire(&self) -> Result<Slot, ApiError> {
        let Some(slots) = &self.slots else {
            return Ok(Slot { _permit: None });
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(Slot { _permit: Some(permit) }),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::RateLimited {
                    retry_after_secs: 1,
                    message: format!(
                        "the host already has {} {} in flight, the most it sends the enclave at once \
                         (the operator sets it with --{}); retry after the Retry-After header's seconds",
                        self.max, self.what, self.flag
                    ),
                })
            }
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u64 {
        self.slots
            .as_ref()
            .map_or(0, |s| (self.max as u64).saturating_sub(s.available_permits() as u64))
    }

    /// Requests refused at the cap since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_cap_until_a_slot_is_freed() {
        let cap = InFlight::new(2, "attestation requests", "max-attestations-in-flight");
        let a = cap.acquire().expect("first");
        let _b = cap.acquire().expect("second");
        assert_eq!(cap.in_flight(), 2);
        let Err(ApiError::RateLimited { message, .. }) = cap.acquire() else {
            panic!("a third in flight must be refused");
        };
        assert!(message.contains("--max-attestations-in-flight"), "{message}");
        assert_eq!(cap.refused(), 1);
        drop(a);
        assert_eq!(cap.in_flight(), 1);
        cap.acquire().expect("a freed slot is taken again");

        let off = InFlight::new(0, "x", "y");
        let held: Vec<_> = (0..100).map(|_| off.acquire().expect("no cap")).collect();
        assert_eq!((held.len(), off.in_flight(), off.refused()), (100, 0, 0));
    }
}
