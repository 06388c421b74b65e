//! Replayable pseudo-randomness for tests that pick random moments.

use std::time::{SystemTime, UNIX_EPOCH};

/// A small deterministic pseudo-random sequence (xorshift), seeded from `CARECHAIN_TEST_SEED`
/// or the clock; the seed is printed so a failing run can be replayed.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    /// Seeds from `CARECHAIN_TEST_SEED` when set, else from the clock, and prints the seed.
    pub fn from_env_or_clock() -> Self {
        let seed = std::env::var("CARECHAIN_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    | 1
            });
        eprintln!("CARECHAIN_TEST_SEED={seed}");
        Self(seed)
    }

    /// The next number in `0..n` (`0..1` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
