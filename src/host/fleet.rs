//! Fleet-wide settlements (host side): requests that are over leave what they owe the rate-limit service
//! in this VM's queue; the route role's root context sends it in batches on its tick, so settling never
//! delays a client's last byte. A batch the service did not take goes back to the queue (bounded: see
//! [`SettleQueue`]).

use super::{add, counter};
use crate::limits::fleet::{self, Descriptor, FleetService, SettleQueue};
use hashbrown::HashMap;
use proxy_wasm::hostcalls;
use std::cell::RefCell;
use std::time::Duration;

thread_local! {
    static QUEUE: RefCell<SettleQueue> = RefCell::new(SettleQueue::default());
}

/// How often the root context sends what is queued.
pub(super) const TICK: Duration = Duration::from_millis(100);
/// Calls started per tick at most (each up to `fleet::BATCH` descriptors).
const CALLS_PER_TICK: usize = 4;
/// Settlement calls' timeout.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Queues a finished request's settlement.
pub(super) fn queue(ds: Vec<Descriptor>) {
    if !ds.is_empty() {
        QUEUE.with(|q| q.borrow_mut().push(ds));
    }
}

/// The sender, owned by the route role's root context.
#[derive(Default)]
pub(super) struct Settler {
    /// Batches on their way, by call token.
    inflight: HashMap<u32, Vec<Descriptor>>,
    /// `switchyard.fleet_limits.settle_failed` / `settle_dropped` (descriptors).
    failed: Option<u32>,
    dropped: Option<u32>,
    reported_drops: u64,
    failing: bool,
}

impl Settler {
    pub(super) fn new() -> Settler {
        Settler {
            failed: counter("switchyard.fleet_limits.settle_failed"),
            dropped: counter("switchyard.fleet_limits.settle_dropped"),
            ..Settler::default()
        }
    }

    pub(super) fn on_tick(&mut self, svc: &FleetService) {
        // While the service fails, one batch per tick tries it (the rest wait in the queue).
        let calls = if self.failing { 1 } else { CALLS_PER_TICK };
        for _ in 0..calls.saturating_sub(self.inflight.len()) {
            let Some(batch) = QUEUE.with(|q| q.borrow_mut().next_batch()) else { break };
            let message = fleet::encode(&svc.domain, &batch);
            match hostcalls::dispatch_grpc_call(
                &svc.cluster,
                fleet::SERVICE,
                fleet::METHOD,
                Vec::new(),
                Some(&message),
                TIMEOUT,
            ) {
                Ok(token) => {
                    self.inflight.insert(token, batch);
                }
                Err(_) => {
                    self.failed_batch(batch);
                    break;
                }
            }
        }
        let dropped = QUEUE.with(|q| q.borrow().dropped);
        if dropped > self.reported_drops {
            add(self.dropped, dropped - self.reported_drops);
            log::warn!("fleet-wide limits: {} settlements dropped (the queue is full)", dropped - self.reported_drops);
            self.reported_drops = dropped;
        }
    }

    pub(super) fn on_response(&mut self, token: u32, status: u32) {
        let Some(batch) = self.inflight.remove(&token) else { return };
        if status == 0 {
            if self.failing {
                self.failing = false;
                log::warn!("fleet-wide limits: settlements go through again");
            }
            return;
        }
        self.failed_batch(batch);
    }

    fn failed_batch(&mut self, batch: Vec<Descriptor>) {
        add(self.failed, batch.len() as u64);
        if !self.failing {
            self.failing = true;
            log::warn!("fleet-wide limits: the rate-limit service did not take a settlement; kept and retried");
        }
        QUEUE.with(|q| q.borrow_mut().push(batch));
    }
}
