//! Reconnect backoff: the one place that decides how long a failover client waits between
//! passes over its broker list, and when it gives up. Sans-IO: it returns durations and the
//! caller sleeps.

use std::time::Duration;

use super::uri::FailoverOptions;

/// The reconnect schedule of one outage, with ActiveMQ `FailoverTransport` semantics: a pass
/// over every address happens at once; after each failed pass the client pauses
/// `initialReconnectDelay`, growing by `backOffMultiplier` up to `maxReconnectDelay` when
/// `useExponentialBackOff`; after `limit` failed reconnect passes (`-1` = never) it gives up.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    exponential: bool,
    /// Failed passes allowed after the first one; `None` means retry forever.
    limit: Option<u64>,
    failures: u64,
    delay: Duration,
}

impl Backoff {
    /// The schedule for a first connect (`startup`, which uses `startupMaxReconnectAttempts`
    /// when set) or for a reconnect after a connection was lost.
    pub fn new(options: &FailoverOptions, startup: bool) -> Self {
        let attempts = if startup && options.startup_max_reconnect_attempts != -1 {
            options.startup_max_reconnect_attempts
        } else {
            options.max_reconnect_attempts
        };
        Backoff {
            initial: options.initial_reconnect_delay,
            max: options.max_reconnect_delay,
            multiplier: options.back_off_multiplier,
            exponential: options.use_exponential_back_off,
            limit: u64::try_from(attempts).ok(),
            failures: 0,
            delay: options
                .initial_reconnect_delay
                .min(options.max_reconnect_delay),
        }
    }

    /// A schedule that makes one pass and never retries (a plain `tcp://` URI).
    pub fn once() -> Self {
        Backoff {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            exponential: false,
            limit: Some(0),
            failures: 0,
            delay: Duration::ZERO,
        }
    }

    /// Records a failed pass. Returns the pause before the next pass, or `None` when the
    /// attempt limit is reached and the client should report the failure.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.failures += 1;
        if self.limit.is_some_and(|limit| self.failures > limit) {
            return None;
        }
        let delay = self.delay;
        if self.exponential {
            self.delay = self.delay.mul_f64(self.multiplier).min(self.max);
        }
        Some(delay)
    }

    /// Failed passes so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// Starts over after a successful connect, so the next outage begins with a short pause.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.delay = self.initial.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(query: &str) -> FailoverOptions {
        let uri: super::super::BrokerUri = format!("failover:(tcp://a:1){query}").parse().unwrap();
        uri.failover.unwrap()
    }

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn exponential_up_to_the_cap() {
        let mut b = Backoff::new(
            &options("?initialReconnectDelay=10&maxReconnectDelay=70"),
            false,
        );
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert_eq!(delays, vec![ms(10), ms(20), ms(40), ms(70), ms(70), ms(70)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(10));
    }

    #[test]
    fn custom_multiplier() {
        let mut b = Backoff::new(
            &options("?initialReconnectDelay=100&backOffMultiplier=1.5&maxReconnectDelay=1000"),
            false,
        );
        let delays: Vec<_> = (0..3).map(|_| b.next_delay()).collect();
        assert_eq!(delays, vec![ms(100), ms(150), ms(225)]);
    }

    #[test]
    fn constant_without_exponential_backoff() {
        let mut b = Backoff::new(
            &options("?useExponentialBackOff=false&initialReconnectDelay=50"),
            false,
        );
        assert_eq!(b.next_delay(), ms(50));
        assert_eq!(b.next_delay(), ms(50));
        assert_eq!(b.next_delay(), ms(50));
    }

    #[test]
    fn attempt_limits() {
        let mut b = Backoff::new(&options("?maxReconnectAttempts=2"), false);
        assert!(b.next_delay().is_some());
        assert!(b.next_delay().is_some());
        assert_eq!(b.next_delay(), None);
        assert_eq!(b.failures(), 3);

        // 0 means one pass and no retry, as in ActiveMQ 5.6+.
        let mut b = Backoff::new(&options("?maxReconnectAttempts=0"), false);
        assert_eq!(b.next_delay(), None);

        // -1 retries forever.
        let mut b = Backoff::new(&options(""), false);
        assert!((0..1000).all(|_| b.next_delay().is_some()));
    }

    #[test]
    fn startup_limit_applies_to_the_first_connect_only() {
        let o = options("?startupMaxReconnectAttempts=1&maxReconnectAttempts=-1");
        let mut startup = Backoff::new(&o, true);
        assert!(startup.next_delay().is_some());
        assert_eq!(startup.next_delay(), None);
        let mut later = Backoff::new(&o, false);
        assert!((0..100).all(|_| later.next_delay().is_some()));

        // Unset (-1), the startup limit falls back to maxReconnectAttempts.
        let mut b = Backoff::new(&options("?maxReconnectAttempts=1"), true);
        assert!(b.next_delay().is_some());
        assert_eq!(b.next_delay(), None);
    }

    #[test]
    fn once_never_retries() {
        let mut b = Backoff::once();
        assert_eq!(b.next_delay(), None);
    }
}
