//! Fleet-tier cache puts (host side): a request whose answer was stored leaves its encoded `Put` in this
//! VM's [`PutQueue`] (the pure core's: bounded in items and bytes), and the route role's root context
//! sends the queue on its tick, each put one unary gRPC call to the `fleet_limits` cluster. Fire and
//! forget: a put that fails is counted, not retried; puts dropped from a full queue are counted.

use super::{add, counter};
use crate::cache::fleet::{self, PutQueue};
use crate::limits::fleet::FleetService;
use hashbrown::HashSet;
use proxy_wasm::hostcalls;
use std::cell::RefCell;
use std::time::Duration;

thread_local! {
    static QUEUE: RefCell<PutQueue> = RefCell::new(PutQueue::default());
}

/// Calls started per tick at most (1,280 puts a second per worker; past that the queue fills, then drops).
const PUTS_PER_TICK: usize = 128;
/// Calls in flight at most (a service that takes calls and never answers holds them until the timeout).
const MAX_IN_FLIGHT: usize = 256;
/// A put's timeout (off the client's path).
const TIMEOUT: Duration = Duration::from_secs(2);

/// Queues a stored answer's put.
pub(super) fn queue(put: Option<Vec<u8>>) {
    if let Some(p) = put {
        QUEUE.with(|q| q.borrow_mut().push(p));
    }
}

/// The sender, owned by the route role's root context (with `cache.fleet`).
#[derive(Default)]
pub(super) struct PutSender {
    inflight: HashSet<u32>,
    /// `switchyard.cache_fleet.put.outcome.{ok,failed,dropped}`.
    ok: Option<u32>,
    failed: Option<u32>,
    dropped: Option<u32>,
    reported_drops: u64,
    failing: bool,
}

impl PutSender {
    pub(super) fn new() -> PutSender {
        PutSender {
            ok: counter("switchyard.cache_fleet.put.outcome.ok"),
            failed: counter("switchyard.cache_fleet.put.outcome.failed"),
            dropped: counter("switchyard.cache_fleet.put.outcome.dropped"),
            ..PutSender::default()
        }
    }

    pub(super) fn on_tick(&mut self, svc: &FleetService) {
        for _ in 0..PUTS_PER_TICK.min(MAX_IN_FLIGHT.saturating_sub(self.inflight.len())) {
            let Some(put) = QUEUE.with(|q| q.borrow_mut().pop()) else { break };
            match hostcalls::dispatch_grpc_call(
                &svc.cluster,
                fleet::SERVICE,
                fleet::PUT,
                Vec::new(),
                Some(&put),
                TIMEOUT,
            ) {
                Ok(token) => {
                    self.inflight.insert(token);
                }
                Err(e) => {
                    self.failed(&format!("Envoy refused the call: {e:?}"));
                    break;
                }
            }
        }
        let dropped = QUEUE.with(|q| q.borrow().dropped);
        if dropped > self.reported_drops {
            add(self.dropped, dropped - self.reported_drops);
            log::warn!("response cache: {} fleet puts dropped (the queue is full)", dropped - self.reported_drops);
            self.reported_drops = dropped;
        }
    }

    /// A put's answer; `false` when the token is not one of this sender's.
    pub(super) fn on_response(&mut self, token: u32, status: u32) -> bool {
        if !self.inflight.remove(&token) {
            return false;
        }
        if status == 0 {
            add(self.ok, 1);
            if self.failing {
                self.failing = false;
                log::warn!("response cache: the fleet tier takes puts again");
            }
        } else {
            let detail = hostcalls::get_grpc_status().ok().and_then(|(_, m)| m).unwrap_or_default();
            self.failed(&format!("grpc status {status} {detail}"));
        }
        true
    }

    fn failed(&mut self, why: &str) {
        add(self.failed, 1);
        if !self.failing {
            self.failing = true;
            log::warn!(
                "response cache: the fleet tier did not take a put ({why}); failed puts are counted, not retried"
            );
        }
    }
}
