//! What /readyz answers: whether this replica is healthy. The leader must hold tokens that have
//! not expired; every replica must have reached the API server recently. A standby that is
//! healthy is ready too: readiness says "this pod works", not "this pod leads".

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;

/// How long the API server may fail (the namespace watch, the Lease) before /readyz turns false.
pub const API_BOUND: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct State {
    /// Whether the API server ever answered this process.
    reached: bool,
    /// Since when every request to the API server has failed, if the last one did.
    failing_since: Option<Instant>,
    leader: bool,
    /// The earliest expiry of the tokens held, if any are.
    tokens_expire: Option<Option<Timestamp>>,
}

/// Shared by the parts that know (the watch, the Lease, the refresher) and the HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<State>>);

impl Health {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The API server answered.
    pub fn api_ok(&self) {
        let mut s = self.state();
        s.reached = true;
        s.failing_since = None;
    }

    /// A request to the API server failed (no answer, or a server error).
    pub fn api_failed(&self) {
        self.state().failing_since.get_or_insert_with(Instant::now);
    }

    /// This replica leads (and writes) or not; a new leader holds no tokens yet.
    pub fn set_leader(&self, leader: bool) {
        let mut s = self.state();
        if s.leader != leader {
            s.tokens_expire = None;
        }
        s.leader = leader;
    }

    /// The leader got tokens whose earliest expiry is `expires`.
    pub fn tokens(&self, expires: Option<Timestamp>) {
        self.state().tokens_expire = Some(expires);
    }

    /// Ready, or why not.
    pub fn ready(&self, now: Instant, wall: Timestamp) -> Result<(), &'static str> {
        let s = self.state();
        if !s.reached {
            return Err("the Kubernetes API server has not answered yet");
        }
        if s.failing_since
            .is_some_and(|t| now.duration_since(t) > API_BOUND)
        {
            return Err("the Kubernetes API server has not answered for more than 30 s");
        }
        if s.leader {
            match s.tokens_expire {
                None => return Err("the leader holds no ECR tokens yet"),
                Some(Some(t)) if t <= wall => return Err("the ECR tokens held have expired"),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_when_the_api_answers_and_the_leader_holds_live_tokens() {
        let h = Health::default();
        let now = Instant::now();
        let wall = Timestamp::from_second(2_000_000_000).unwrap();
        assert!(h.ready(now, wall).is_err(), "nothing reached yet");
        h.api_ok();
        assert_eq!(h.ready(now, wall), Ok(()), "a standby needs no tokens");
        h.set_leader(true);
        assert!(h.ready(now, wall).unwrap_err().contains("no ECR tokens"));
        h.tokens(Some(Timestamp::from_second(1_000_000_000).unwrap()));
        assert!(h.ready(now, wall).unwrap_err().contains("expired"));
        h.tokens(Some(Timestamp::from_second(2_000_043_200).unwrap()));
        assert_eq!(h.ready(now, wall), Ok(()));
        h.api_failed();
        assert_eq!(h.ready(now, wall), Ok(()), "a short outage is tolerated");
        let later = now + API_BOUND + Duration::from_secs(1);
        assert!(h.ready(later, wall).unwrap_err().contains("more than 30 s"));
        h.api_ok();
        assert_eq!(h.ready(later, wall), Ok(()));
        h.set_leader(false);
        h.set_leader(true);
        assert!(
            h.ready(later, wall).is_err(),
            "a new term starts without tokens"
        );
    }
}
