//! The sim-owned virtual clock. Controllers compare deadlines against it, never against the
//! wall clock, so tests can `pause()` it and `advance()` through "ready after 30s" in
//! microseconds. Unpaused, it follows real time at a configurable speed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;

/// A shared handle to the virtual clock; clones see the same time.
#[derive(Clone, Debug)]
pub struct SimClock {
    inner: Arc<Mutex<ClockState>>,
}

#[derive(Debug)]
struct ClockState {
    /// Sim time at `anchor_real`.
    anchor_sim: Timestamp,
    anchor_real: Instant,
    paused: bool,
    /// Sim seconds per real second while running.
    speed: f64,
}

impl ClockState {
    fn now(&self) -> Timestamp {
        if self.paused {
            return self.anchor_sim;
        }
        let elapsed = self.anchor_real.elapsed().mul_f64(self.speed);
        let span = jiff::SignedDuration::try_from(elapsed).unwrap_or(jiff::SignedDuration::MAX);
        self.anchor_sim.checked_add(span).unwrap_or(self.anchor_sim)
    }

    /// Moves the anchor to "now" so later speed or pause changes start from the current time.
    fn reanchor(&mut self) {
        self.anchor_sim = self.now();
        self.anchor_real = Instant::now();
    }
}

impl SimClock {
    /// A clock starting at the current wall-clock time, running at `speed` (1.0 = real time).
    pub fn new(start: Timestamp, paused: bool, speed: f64) -> SimClock {
        let speed = if speed.is_finite() && speed > 0.0 { speed } else { 1.0 };
        SimClock {
            inner: Arc::new(Mutex::new(ClockState { anchor_sim: start, anchor_real: Instant::now(), paused, speed })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // A poisoned clock still holds a valid time: keep going rather than propagate the panic.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn now(&self) -> Timestamp {
        self.lock().now()
    }

    /// Stops time; only [`SimClock::advance`] moves it until [`SimClock::resume`].
    pub fn pause(&self) {
        let mut state = self.lock();
        state.reanchor();
        state.paused = true;
    }

    pub fn resume(&self) {
        let mut state = self.lock();
        state.reanchor();
        state.paused = false;
    }

    pub fn is_paused(&self) -> bool {
        self.lock().paused
    }

    /// Jumps forward by `by`, paused or not.
    pub fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.reanchor();
        let span = jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX);
        state.anchor_sim = state.anchor_sim.checked_add(span).unwrap_or(state.anchor_sim);
    }
}

/// `now + delay`, saturating.
pub fn after(at: Timestamp, delay: Duration) -> Timestamp {
    let span = jiff::SignedDuration::try_from(delay).unwrap_or(jiff::SignedDuration::MAX);
    at.checked_add(span).unwrap_or(Timestamp::MAX)
}

/// RFC 3339 with second precision, as `metav1.Time` serializes.
pub fn format_time(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a `metav1.Time` string back; `None` if malformed.
pub fn parse_time(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_clock_moves_only_when_advanced() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = SimClock::new(start, true, 1.0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(30));
        assert_eq!(format_time(clock.now()), "2026-01-01T00:00:30Z");
    }

    #[test]
    fn running_clock_follows_real_time_at_speed() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = SimClock::new(start, false, 1000.0);
        std::thread::sleep(Duration::from_millis(20));
        assert!(clock.now().duration_since(start) >= jiff::SignedDuration::from_secs(10));
    }
}
