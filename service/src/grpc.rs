//! `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`: plan the descriptors, one script call,
//! one status per descriptor in order. Redis unreachable, slow or failing → UNAVAILABLE (the caller's
//! failure mode decides); a malformed Switchyard descriptor → INVALID_ARGUMENT.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};

use crate::metrics::{Metrics, Outcome};
use crate::plan::{self, Item, Kind, Op, Planned};
use crate::proto::rate_limit_response::{Code, DescriptorStatus};
use crate::proto::rate_limit_service_server::RateLimitService;
use crate::proto::{RateLimitRequest, RateLimitResponse};
use crate::rules::Rules;
use crate::store::Store;

/// Most descriptors one call may carry (settlements batch up to 500).
pub const MAX_DESCRIPTORS: usize = 1000;

pub struct Limits {
    pub domain: String,
    pub rules: Arc<Rules>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

fn duration(ns: u64) -> prost_types::Duration {
    prost_types::Duration { seconds: (ns / 1_000_000_000) as i64, nanos: (ns % 1_000_000_000) as i32 }
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Limits {
    /// Decides one request (the gRPC method without its envelope).
    pub async fn decide(&self, req: &RateLimitRequest) -> Result<RateLimitResponse, Status> {
        if req.descriptors.len() > MAX_DESCRIPTORS {
            return Err(Status::invalid_argument(format!("more than {MAX_DESCRIPTORS} descriptors")));
        }
        let planned = plan::plan(req, &self.domain, &self.rules).map_err(Status::invalid_argument)?;
        let items: Vec<&Item> = planned
            .iter()
            .filter_map(|e| match &e.planned {
                Planned::Script(i) => Some(i),
                Planned::Unlimited => None,
            })
            .collect();
        for e in &planned {
            self.metrics.descriptor(e.class);
        }
        let decision = if items.is_empty() {
            None
        } else {
            Some(self.store.decide(&items, None).await.map_err(|e| Status::unavailable(format!("redis: {e}")))?)
        };
        for it in &items {
            if it.op != Op::Admit {
                self.metrics.settlement(it.op == Op::Charge);
            }
        }
        let mut results = decision.as_ref().map(|d| d.items.iter());
        let now = unix_secs();
        let statuses = planned
            .iter()
            .map(|e| {
                let Planned::Script(it) = &e.planned else {
                    return DescriptorStatus { code: Code::Ok as i32, ..Default::default() };
                };
                let r = results.as_mut().and_then(|r| r.next()).copied().unwrap_or_default();
                let reset_ns = match it.kind {
                    Kind::Rate { .. } => r.reset_ns,
                    Kind::Budget { period, .. } => period.secs_left(now).saturating_mul(1_000_000_000),
                };
                DescriptorStatus {
                    code: if r.over { Code::OverLimit } else { Code::Ok } as i32,
                    current_limit: it.current_limit.clone(),
                    limit_remaining: r.remaining.min(u32::MAX as u64) as u32,
                    duration_until_reset: Some(duration(reset_ns)),
                }
            })
            .collect();
        let over = decision.is_some_and(|d| d.over);
        Ok(RateLimitResponse { overall_code: if over { Code::OverLimit } else { Code::Ok } as i32, statuses })
    }
}

#[tonic::async_trait]
impl RateLimitService for Limits {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let res = self.decide(request.get_ref()).await;
        self.metrics.request(match &res {
            Ok(r) if r.overall_code == Code::OverLimit as i32 => Outcome::Over,
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::Error,
        });
        res.map(Response::new)
    }
}
