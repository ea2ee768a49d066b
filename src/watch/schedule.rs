//! When the next full refresh runs. Pure: the caller passes the time and the jitter.
//!
//! A refresh is due `--refresh-before` ahead of the earliest token's expiry, a little earlier
//! for jitter (so that installs started together do not call AWS together). A failed refresh is
//! tried again with exponential backoff, long before the tokens expire.

use std::time::Duration;

use jiff::Timestamp;

use crate::config::TOKEN_LIFE;

/// The wait after tokens that arrive already within `--refresh-before` of their expiry (or past
/// it): a clock far off, or an odd endpoint. Refreshing at once, again and again, would only
/// hammer AWS and the API server.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest wait otherwise.
const MIN_WAIT: Duration = Duration::from_secs(5);
/// The most jitter taken off a wait.
const MAX_JITTER: Duration = Duration::from_secs(300);
/// The first wait after a failed refresh, doubled each time up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(5);
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// How long from `now` until the next refresh, for tokens whose earliest expiry is
/// `expires_at`. `jitter` in [0, 1) takes up to 1% of the wait (5 minutes at most) off it.
/// An unknown expiry counts as a full token life from now.
pub fn until_refresh(
    expires_at: Option<Timestamp>,
    now: Timestamp,
    refresh_before: Duration,
    jitter: f64,
) -> Duration {
    let left = match expires_at {
        Some(t) => {
            let secs = t.as_millisecond().saturating_sub(now.as_millisecond());
            Duration::from_millis(u64::try_from(secs).unwrap_or(0))
        }
        None => TOKEN_LIFE,
    };
    let wait = left.saturating_sub(refresh_before);
    if wait.is_zero() {
        return MIN_INTERVAL;
    }
    let jitter = wait.mul_f64(0.01 * jitter.clamp(0.0, 1.0)).min(MAX_JITTER);
    wait.saturating_sub(jitter).max(MIN_WAIT)
}

/// How long to wait before try `failures + 1` after `failures` failed ones in a row (at least
/// one), with `jitter` in [0, 1) adding up to a quarter.
pub fn retry_after(failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let base = FIRST_RETRY.saturating_mul(1 << doublings).min(MAX_RETRY);
    base + base.mul_f64(0.25 * jitter.clamp(0.0, 1.0))
}

/// A number in [0, 1) that differs from call to call and from process to process: enough to
/// spread retries, no more (nothing here needs a random number generator).
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn refreshes_the_margin_before_the_earliest_expiry_less_a_little_jitter() {
        let now = at(1_000_000);
        let expires = at(1_000_000 + 12 * 3600);
        assert_eq!(until_refresh(Some(expires), now, HOUR, 0.0), 11 * HOUR);
        let jittered = until_refresh(Some(expires), now, HOUR, 0.999);
        assert!(
            jittered < 11 * HOUR && jittered >= 11 * HOUR - MAX_JITTER,
            "{jittered:?}"
        );
        // A short wait keeps a short jitter.
        let soon = until_refresh(Some(at(1_000_000 + 3600 + 100)), now, HOUR, 0.999);
        assert!(
            soon > Duration::from_secs(98) && soon <= Duration::from_secs(100),
            "{soon:?}"
        );
    }

    #[test]
    fn an_expired_or_unknown_expiry_never_makes_a_refresh_loop() {
        let now = at(1_000_000);
        // moto's tokens expired in 2015.
        assert_eq!(
            until_refresh(Some(at(1_420_000_000 - 10_000_000_000)), now, HOUR, 0.5),
            MIN_INTERVAL
        );
        assert_eq!(
            until_refresh(Some(at(1_000_000 + 3600)), now, HOUR, 0.0),
            MIN_INTERVAL
        );
        assert_eq!(until_refresh(None, now, HOUR, 0.0), 11 * HOUR);
    }

    #[test]
    fn retries_back_off_to_five_minutes() {
        assert_eq!(retry_after(1, 0.0), Duration::from_secs(5));
        assert_eq!(retry_after(2, 0.0), Duration::from_secs(10));
        assert_eq!(retry_after(4, 0.0), Duration::from_secs(40));
        assert_eq!(retry_after(30, 0.0), MAX_RETRY);
        assert!(retry_after(1, 0.99) > Duration::from_secs(6));
        assert!(retry_after(1, 0.99) < Duration::from_millis(6250));
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
