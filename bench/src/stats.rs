//! Percentiles of latency samples, and the comparison of a gateway run with a direct one.

use std::time::Duration;

use serde::Serialize;

/// Nearest-rank percentiles of one set of samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`-th percentile (0..=100) of sorted samples, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Summary {
        let mut s = samples.to_vec();
        s.sort_unstable();
        if s.is_empty() {
            return Summary::default();
        }
        let total: Duration = s.iter().sum();
        Summary {
            count: s.len(),
            p50_ms: ms(percentile(&s, 50.0)),
            p90_ms: ms(percentile(&s, 90.0)),
            p99_ms: ms(percentile(&s, 99.0)),
            max_ms: ms(s[s.len() - 1]),
            mean_ms: ms(total) / s.len() as f64,
        }
    }
}

/// CPU time per request, split by process, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuPerRequest {
    /// The benchmark's own load generator (WebSocket client or HTTP client).
    pub client_us: f64,
    /// The gateway process (0 for direct runs).
    pub gateway_us: f64,
    pub simulator_us: f64,
    pub total_us: f64,
}

impl CpuPerRequest {
    pub fn new(client_ns: u64, gateway_ns: u64, simulator_ns: u64, requests: usize) -> Self {
        let per = |ns: u64| {
            if requests == 0 {
                0.0
            } else {
                ns as f64 / 1000.0 / requests as f64
            }
        };
        CpuPerRequest {
            client_us: per(client_ns),
            gateway_us: per(gateway_ns),
            simulator_us: per(simulator_ns),
            total_us: per(client_ns + gateway_ns + simulator_ns),
        }
    }
}

/// `a / b`, or 0 when there is nothing to divide by (an empty run).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// A gateway run next to the direct run of the same load.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub mode: &'static str,
    pub concurrency: usize,
    pub direct: Summary,
    pub gateway: Summary,
    /// Gateway percentile minus direct percentile (the latency the gateway adds), in ms.
    pub added_p50_ms: f64,
    pub added_p99_ms: f64,
    /// Gateway percentile over direct percentile.
    pub ratio_p50: f64,
    pub ratio_p99: f64,
    pub direct_rps: f64,
    pub gateway_rps: f64,
    /// Gateway requests per second over direct requests per second.
    pub throughput_ratio: f64,
    pub direct_errors: usize,
    pub gateway_errors: usize,
    pub direct_cpu: CpuPerRequest,
    pub gateway_cpu: CpuPerRequest,
    /// Direct CPU per request over gateway CPU per request, all processes counted: the share of
    /// direct throughput the gateway path can reach on a CPU-bound machine, however busy it is.
    pub cpu_throughput_ratio: f64,
    /// The gateway process's CPU per request over the direct client's: what the gateway costs
    /// compared with the `LingmaClient` it wraps (its pool runs the same client).
    pub gateway_vs_client_cpu: f64,
    /// `None`: closed loop (flat out). `Some(rate)`: both sides paced to `rate` requests/s.
    pub paced_rps: Option<f64>,
}

impl Comparison {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: &'static str,
        concurrency: usize,
        direct: &[Duration],
        gateway: &[Duration],
        direct_wall: Duration,
        gateway_wall: Duration,
        direct_errors: usize,
        gateway_errors: usize,
    ) -> Comparison {
        let d = Summary::of(direct);
        let g = Summary::of(gateway);
        let rps = |n: usize, wall: Duration| {
            if wall.is_zero() {
                0.0
            } else {
                n as f64 / wall.as_secs_f64()
            }
        };
        let direct_rps = rps(direct.len(), direct_wall);
        let gateway_rps = rps(gateway.len(), gateway_wall);
        Comparison {
            mode,
            concurrency,
            direct: d,
            gateway: g,
            added_p50_ms: g.p50_ms - d.p50_ms,
            added_p99_ms: g.p99_ms - d.p99_ms,
            ratio_p50: ratio(g.p50_ms, d.p50_ms),
            ratio_p99: ratio(g.p99_ms, d.p99_ms),
            direct_rps,
            gateway_rps,
            throughput_ratio: ratio(gateway_rps, direct_rps),
            direct_errors,
            gateway_errors,
            direct_cpu: CpuPerRequest::default(),
            gateway_cpu: CpuPerRequest::default(),
            cpu_throughput_ratio: 0.0,
            gateway_vs_client_cpu: 0.0,
            paced_rps: None,
        }
    }

    pub fn paced(mut self, rate: Option<f64>) -> Self {
        self.paced_rps = rate;
        self
    }

    /// `flat-out` for a closed loop, `paced` for a fixed schedule below saturation.
    pub fn load_label(&self) -> &'static str {
        if self.paced_rps.is_some() {
            "paced"
        } else {
            "flat-out"
        }
    }

    pub fn with_cpu(mut self, direct: CpuPerRequest, gateway: CpuPerRequest) -> Self {
        self.direct_cpu = direct;
        self.gateway_cpu = gateway;
        self.cpu_throughput_ratio = ratio(direct.total_us, gateway.total_us);
        self.gateway_vs_client_cpu = ratio(gateway.gateway_us, direct.client_us);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&s, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&s[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn comparison_subtracts_and_divides() {
        let d = vec![Duration::from_millis(2); 10];
        let g = vec![Duration::from_millis(3); 10];
        let c = Comparison::new(
            "x",
            1,
            &d,
            &g,
            Duration::from_secs(1),
            Duration::from_secs(2),
            0,
            0,
        );
        assert!((c.added_p50_ms - 1.0).abs() < 1e-9);
        assert!((c.ratio_p99 - 1.5).abs() < 1e-9);
        assert!((c.throughput_ratio - 0.5).abs() < 1e-9);
        let c = c.with_cpu(
            CpuPerRequest::new(100_000, 0, 100_000, 1),
            CpuPerRequest::new(50_000, 150_000, 100_000, 1),
        );
        assert!((c.gateway_vs_client_cpu - 1.5).abs() < 1e-9);
        assert!((c.cpu_throughput_ratio - 200.0 / 300.0).abs() < 1e-9);
    }
}
