//! How long the kubelet may cache an answer: until shortly before the ECR token expires.
//!
//! The kubelet keeps a response for its `cacheDuration` and runs the plugin again only after
//! it; a duration that outlives the token means pulls fail with 401 until the entry expires.
//!
//! Clock skew matters: `expiresAt` is on AWS's clock, the remaining life is measured on the
//! node's, and the kubelet counts the duration on the node's. A node clock behind AWS's by S
//! makes the token look S longer-lived than it is. Two things bound that: the remaining life
//! is never taken as more than an ECR token's whole life ([`MAX_TOKEN_LIFE`]), which cancels
//! the skew for a token just issued with its full 12 hours; and the [`SAFETY_MARGIN`] absorbs a
//! skew of up to about 15 minutes for a shorter-lived token (one issued with session
//! credentials that expire sooner). A node more than that behind (no NTP) gets 401s near the
//! end of each cache period; the fix is the node's clock.

use std::time::Duration;

use jiff::Timestamp;

/// Taken off the token's remaining life, so a pull that starts just before the cache entry
/// expires still authenticates, and a node clock up to this much behind AWS's is absorbed.
pub const SAFETY_MARGIN: Duration = Duration::from_secs(15 * 60);
/// The longest an ECR (and ECR Public) authorization token is valid: 12 hours from issue.
pub const MAX_TOKEN_LIFE: Duration = Duration::from_secs(12 * 3600);
/// For a token without a usable expiry (none, or already past): cached briefly, so a burst of
/// pulls shares one answer, but never for long.
pub const UNKNOWN_EXPIRY: Duration = Duration::from_secs(60);

/// The cache duration for a token that expires at `expires_at`, seen at `now`: the remaining
/// life less [`SAFETY_MARGIN`], or half the remaining life when that is shorter than twice the
/// margin, so the entry always ends before the token does.
pub fn cache_duration(now: Timestamp, expires_at: Option<Timestamp>) -> Duration {
    let Some(expires_at) = expires_at else {
        return UNKNOWN_EXPIRY;
    };
    let Ok(remaining) = Duration::try_from(expires_at.duration_since(now)) else {
        // Negative: the token is already past its expiry.
        return UNKNOWN_EXPIRY;
    };
    if remaining.is_zero() {
        return UNKNOWN_EXPIRY;
    }
    // The token was issued just now: more than its whole life left means the node's clock is
    // behind AWS's.
    let remaining = remaining.min(MAX_TOKEN_LIFE);
    let d = if remaining > SAFETY_MARGIN * 2 {
        remaining - SAFETY_MARGIN
    } else {
        remaining / 2
    };
    Duration::from_secs(d.as_secs())
}

/// A duration as Go's `time.Duration` prints it (`11h45m0s`, `1m0s`, `30s`, `0s`), the form the
/// kubelet's `metav1.Duration` parses. Whole seconds only.
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn twelve_hours_is_cached_for_eleven_and_three_quarters() {
        let now = at("2026-11-23T10:00:00Z");
        let d = cache_duration(now, Some(at("2026-11-23T22:00:00Z")));
        assert_eq!(d, Duration::from_secs(11 * 3600 + 45 * 60));
        assert_eq!(go_duration(d), "11h45m0s");
    }

    #[test]
    fn a_node_clock_behind_aws_does_not_stretch_the_cache() {
        // The token expires 12 h after AWS's now; the node's clock is 40 minutes behind.
        let node_now = at("2026-11-23T09:20:00Z");
        let d = cache_duration(node_now, Some(at("2026-11-23T22:00:00Z")));
        assert_eq!(
            d,
            Duration::from_secs(11 * 3600 + 45 * 60),
            "{}",
            go_duration(d)
        );
        // Ahead of AWS by 10 minutes: a shorter cache, never a longer one.
        let node_now = at("2026-11-23T10:10:00Z");
        let d = cache_duration(node_now, Some(at("2026-11-23T22:00:00Z")));
        assert_eq!(d, Duration::from_secs(11 * 3600 + 35 * 60));
    }

    #[test]
    fn a_short_life_is_halved_so_the_entry_ends_first() {
        let now = at("2026-11-23T10:00:00Z");
        assert_eq!(
            cache_duration(now, Some(at("2026-11-23T10:20:00Z"))),
            Duration::from_secs(600)
        );
        assert_eq!(
            cache_duration(now, Some(at("2026-11-23T10:00:01Z"))),
            Duration::ZERO
        );
    }

    #[test]
    fn no_usable_expiry_gets_a_short_duration() {
        let now = at("2026-11-23T10:00:00Z");
        // moto's tokens expire in 2015.
        assert_eq!(
            cache_duration(now, Some(at("2015-01-01T00:00:00Z"))),
            UNKNOWN_EXPIRY
        );
        assert_eq!(cache_duration(now, Some(now)), UNKNOWN_EXPIRY);
        assert_eq!(cache_duration(now, None), UNKNOWN_EXPIRY);
        assert!(UNKNOWN_EXPIRY < SAFETY_MARGIN);
    }

    #[test]
    fn go_duration_strings() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m0s"),
            (3600, "1h0m0s"),
            (3661, "1h1m1s"),
            (43200, "12h0m0s"),
        ] {
            assert_eq!(go_duration(Duration::from_secs(secs)), want);
        }
        assert_eq!(go_duration(Duration::from_millis(1999)), "1s");
    }
}
