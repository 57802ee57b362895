//! Percentiles and rates, printed in one format.

use std::time::Duration;

/// Sorted samples.
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    /// Nearest-rank percentile (`p` in 0..=100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    /// The middle sample, or the mean of the middle two.
    pub fn median(&self) -> Duration {
        match self.0.len() {
            0 => Duration::ZERO,
            n if n % 2 == 1 => self.0[n / 2],
            n => (self.0[n / 2 - 1] + self.0[n / 2]) / 2,
        }
    }

    pub fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }

    pub fn mean(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::EPSILON)
}

/// `label  p50 … p90 … p99 … max … (n=…)`.
pub fn print_percentiles(label: &str, samples: &Samples) {
    println!(
        "  {label:<44} p50 {:>10}  p90 {:>10}  p99 {:>10}  max {:>10}  (n={})",
        ms(samples.percentile(50.0)),
        ms(samples.percentile(90.0)),
        ms(samples.percentile(99.0)),
        ms(samples.max()),
        samples.len()
    );
}
