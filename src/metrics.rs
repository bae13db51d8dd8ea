//! Prometheus metrics of the gateway, in their own registry (no global state).
//!
//! Every family is prefixed `lingma_gw_`. The fields are public so handlers can record directly;
//! the helper methods cover the common cases and keep label names in one place. Counters that other
//! components already keep (session cache, admission) are copied in with the `sync_*` methods just
//! before [`Metrics::render`], so those components stay free of metrics code.
//!
//! Label cardinality is the caller's responsibility: pass the matched route template (e.g.
//! `/v1/chat/completions`), never the raw path, as `route`.

use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::turn::reuse::CacheStats;

/// `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

const PREFIX: &str = "lingma_gw";

/// Whole chat turns: from tens of milliseconds (simulator) to several minutes (long answers).
const CHAT_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];
/// Time to first token.
const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0,
];
/// Time spent in the gateway itself: down to 50 µs.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub chat_duration: HistogramVec,
    pub time_to_first_token: Histogram,
    pub gateway_overhead: Histogram,
    pub prompt_tokens: IntCounter,
    pub completion_tokens: IntCounter,
    pub chats_in_flight: IntGauge,
    pub admission_waiting: IntGauge,
    pub admission_rejections: IntCounter,
    pub session_cache_hits: IntCounter,
    pub session_cache_misses: IntCounter,
    pub session_cache_evictions: IntCounter,
    pub session_cache_expirations: IntCounter,
    pub instance_state: IntGaugeVec,
    pub instance_restarts: IntCounterVec,
    pub upstream_errors: IntCounterVec,
    pub stream_disconnects: IntCounter,
    /// Tool-call blocks in answers, by the syntax the model wrote and what became of them
    /// (`parsed`, `repaired`, `reasked`: fixed by the re-ask, `invalid`, `failed`: still unusable
    /// after it).
    pub tool_calls: IntCounterVec,
    /// Bytes of questions sent to Lingma, by whether an upstream session was continued (then
    /// only the new messages are sent).
    pub question_bytes: IntCounterVec,
    pub build_info: IntGaugeVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(PREFIX)
}

fn hopts(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace(PREFIX)
        .buckets(buckets.to_vec())
}

/// Builds and registers every collector. Fails only on invalid or duplicate names, i.e. a bug.
fn build(registry: Registry, version: &str) -> prometheus::Result<Metrics> {
    fn reg<C: prometheus::core::Collector + Clone + 'static>(
        registry: &Registry,
        c: C,
    ) -> prometheus::Result<C> {
        registry.register(Box::new(c.clone()))?;
        Ok(c)
    }
    let r = &registry;
    let m = Metrics {
        http_requests: reg(
            r,
            IntCounterVec::new(
                opts(
                    "http_requests_total",
                    "HTTP requests by route, method and status.",
                ),
                &["route", "method", "status"],
            )?,
        )?,
        chat_duration: reg(
            r,
            HistogramVec::new(
                hopts(
                    "chat_duration_seconds",
                    "Duration of chat completions, from admission to the last byte.",
                    CHAT_BUCKETS,
                ),
                &["stream"],
            )?,
        )?,
        time_to_first_token: reg(
            r,
            Histogram::with_opts(hopts(
                "time_to_first_token_seconds",
                "Time from request arrival to the first content sent to the client.",
                TTFT_BUCKETS,
            ))?,
        )?,
        gateway_overhead: reg(
            r,
            Histogram::with_opts(hopts(
                "gateway_overhead_seconds",
                "Time spent in the gateway itself, excluding waiting for Lingma.",
                OVERHEAD_BUCKETS,
            ))?,
        )?,
        prompt_tokens: reg(
            r,
            IntCounter::with_opts(opts(
                "prompt_tokens_total",
                "Estimated prompt tokens sent upstream.",
            ))?,
        )?,
        completion_tokens: reg(
            r,
            IntCounter::with_opts(opts(
                "completion_tokens_total",
                "Estimated completion tokens returned to clients.",
            ))?,
        )?,
        chats_in_flight: reg(
            r,
            IntGauge::with_opts(opts("chats_in_flight", "Chat completions being served."))?,
        )?,
        admission_waiting: reg(
            r,
            IntGauge::with_opts(opts(
                "admission_waiting",
                "Requests waiting for an admission slot.",
            ))?,
        )?,
        admission_rejections: reg(
            r,
            IntCounter::with_opts(opts(
                "admission_rejections_total",
                "Requests rejected with 429 because the gateway was at capacity.",
            ))?,
        )?,
        session_cache_hits: reg(
            r,
            IntCounter::with_opts(opts(
                "session_cache_hits_total",
                "Conversations continued in an existing upstream session.",
            ))?,
        )?,
        session_cache_misses: reg(
            r,
            IntCounter::with_opts(opts(
                "session_cache_misses_total",
                "Conversation continuations that found no reusable upstream session.",
            ))?,
        )?,
        session_cache_evictions: reg(
            r,
            IntCounter::with_opts(opts(
                "session_cache_evictions_total",
                "Session cache entries evicted to stay within the size limit.",
            ))?,
        )?,
        session_cache_expirations: reg(
            r,
            IntCounter::with_opts(opts(
                "session_cache_expirations_total",
                "Session cache entries dropped because their TTL passed.",
            ))?,
        )?,
        instance_state: reg(
            r,
            IntGaugeVec::new(
                opts(
                    "instance_state",
                    "Lingma instance state: 1 for the current state, 0 otherwise.",
                ),
                &["instance", "state"],
            )?,
        )?,
        instance_restarts: reg(
            r,
            IntCounterVec::new(
                opts("instance_restarts_total", "Lingma instance restarts."),
                &["instance"],
            )?,
        )?,
        upstream_errors: reg(
            r,
            IntCounterVec::new(
                opts(
                    "upstream_errors_total",
                    "Failed upstream (Lingma) calls by kind.",
                ),
                &["kind"],
            )?,
        )?,
        stream_disconnects: reg(
            r,
            IntCounter::with_opts(opts(
                "stream_disconnects_total",
                "Streams whose client disconnected before the end.",
            ))?,
        )?,
        tool_calls: reg(
            r,
            IntCounterVec::new(
                opts(
                    "tool_calls_total",
                    "Tool-call blocks in answers by the syntax written and outcome.",
                ),
                &["syntax", "outcome"],
            )?,
        )?,
        question_bytes: reg(
            r,
            IntCounterVec::new(
                opts(
                    "question_bytes_total",
                    "Bytes of questions sent to Lingma, by whether an upstream session was continued.",
                ),
                &["reuse"],
            )?,
        )?,
        build_info: reg(
            r,
            IntGaugeVec::new(
                opts("build_info", "Build information; always 1."),
                &["version"],
            )?,
        )?,
        registry,
    };
    m.build_info.with_label_values(&[version]).set(1);
    // Both label values exist from the start, so dashboards see zeros instead of no data.
    for flag in ["true", "false"] {
        let _ = m.chat_duration.with_label_values(&[flag]);
        let _ = m.question_bytes.with_label_values(&[flag]);
    }
    Ok(m)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Metrics for this build (`build_info{version=CARGO_PKG_VERSION}`).
    pub fn new() -> Self {
        Self::with_version(env!("CARGO_PKG_VERSION"))
    }

    pub fn with_version(version: &str) -> Self {
        // Registration fails only for invalid or duplicate metric names, which are constants
        // here; the unit tests construct this, so such a bug cannot ship.
        build(Registry::new(), version).expect("metric definitions are valid and distinct")
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            // Only possible with malformed families, which this registry never holds; still,
            // a scrape should show the problem rather than fail the whole endpoint.
            out.push_str("# error rendering metrics: ");
            out.push_str(&e.to_string());
            out.push('\n');
        }
        out
    }

    pub fn observe_http(&self, route: &str, method: &str, status: u16) {
        self.http_requests
            .with_label_values(&[route, method, status.to_string().as_str()])
            .inc();
    }

    pub fn observe_chat(&self, stream: bool, duration: Duration) {
        self.chat_duration
            .with_label_values(&[if stream { "true" } else { "false" }])
            .observe(duration.as_secs_f64());
    }

    pub fn observe_time_to_first_token(&self, duration: Duration) {
        self.time_to_first_token.observe(duration.as_secs_f64());
    }

    pub fn observe_gateway_overhead(&self, duration: Duration) {
        self.gateway_overhead.observe(duration.as_secs_f64());
    }

    pub fn add_tokens(&self, prompt: u32, completion: u32) {
        self.prompt_tokens.inc_by(u64::from(prompt));
        self.completion_tokens.inc_by(u64::from(completion));
    }

    pub fn tool_call(&self, syntax: &str, outcome: &str) {
        self.tool_calls.with_label_values(&[syntax, outcome]).inc();
    }

    pub fn upstream_error(&self, kind: &str) {
        self.upstream_errors.with_label_values(&[kind]).inc();
    }

    pub fn instance_restarted(&self, instance: &str) {
        self.instance_restarts.with_label_values(&[instance]).inc();
    }

    /// Sets `instance_state{instance, state}` to 1 for `state` and 0 for every other state in
    /// `all_states` (so a dashboard can sum by state). `state` is set even if missing from
    /// `all_states`.
    pub fn set_instance_state(&self, instance: &str, state: &str, all_states: &[&str]) {
        for s in all_states {
            self.instance_state
                .with_label_values(&[instance, s])
                .set(i64::from(*s == state));
        }
        self.instance_state
            .with_label_values(&[instance, state])
            .set(1);
    }

    /// Forgets an instance that left the pool (its series stop being exported).
    pub fn remove_instance(&self, instance: &str, all_states: &[&str]) {
        for s in all_states {
            let _ = self.instance_state.remove_label_values(&[instance, s]);
        }
        let _ = self.instance_restarts.remove_label_values(&[instance]);
    }

    /// A guard that counts one chat in `chats_in_flight` until dropped.
    pub fn chat_in_flight(&self) -> InFlightGuard {
        self.chats_in_flight.inc();
        InFlightGuard(self.chats_in_flight.clone())
    }

    /// Copies the session cache's counters in (they only grow, so only the increase is added).
    pub fn sync_session_cache(&self, stats: &CacheStats) {
        for (counter, value) in [
            (&self.session_cache_hits, stats.hits),
            (&self.session_cache_misses, stats.misses),
            (&self.session_cache_evictions, stats.evictions),
            (&self.session_cache_expirations, stats.expirations),
        ] {
            let current = counter.get();
            if value > current {
                counter.inc_by(value - current);
            }
        }
    }

    /// Copies admission state in: the current number of waiters and the rejection total.
    pub fn sync_admission(&self, waiting: usize, rejected_total: u64) {
        self.admission_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        let current = self.admission_rejections.get();
        if rejected_total > current {
            self.admission_rejections.inc_by(rejected_total - current);
        }
    }
}

/// Decrements `chats_in_flight` on drop (also when the request future is cancelled).
#[derive(Debug)]
pub struct InFlightGuard(IntGauge);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAMILIES: &[(&str, &str)] = &[
        ("lingma_gw_http_requests_total", "counter"),
        ("lingma_gw_chat_duration_seconds", "histogram"),
        ("lingma_gw_time_to_first_token_seconds", "histogram"),
        ("lingma_gw_gateway_overhead_seconds", "histogram"),
        ("lingma_gw_prompt_tokens_total", "counter"),
        ("lingma_gw_completion_tokens_total", "counter"),
        ("lingma_gw_chats_in_flight", "gauge"),
        ("lingma_gw_admission_waiting", "gauge"),
        ("lingma_gw_admission_rejections_total", "counter"),
        ("lingma_gw_session_cache_hits_total", "counter"),
        ("lingma_gw_session_cache_misses_total", "counter"),
        ("lingma_gw_session_cache_evictions_total", "counter"),
        ("lingma_gw_session_cache_expirations_total", "counter"),
        ("lingma_gw_instance_state", "gauge"),
        ("lingma_gw_instance_restarts_total", "counter"),
        ("lingma_gw_upstream_errors_total", "counter"),
        ("lingma_gw_stream_disconnects_total", "counter"),
        ("lingma_gw_tool_calls_total", "counter"),
        ("lingma_gw_question_bytes_total", "counter"),
        ("lingma_gw_build_info", "gauge"),
    ];

    fn exercised() -> Metrics {
        let m = Metrics::with_version("1.2.3");
        m.observe_http("/v1/chat/completions", "POST", 200);
        m.observe_chat(true, Duration::from_millis(1500));
        m.observe_time_to_first_token(Duration::from_millis(300));
        m.observe_gateway_overhead(Duration::from_micros(80));
        m.add_tokens(10, 5);
        m.set_instance_state("inst-0", "ready", &["starting", "ready", "failed"]);
        m.instance_restarted("inst-0");
        m.upstream_error("timeout");
        m.stream_disconnects.inc();
        m.tool_call("hermes", "parsed");
        m.question_bytes.with_label_values(&["true"]).inc_by(120);
        m
    }

    #[test]
    fn render_has_every_family_with_help_and_type() {
        let text = exercised().render();
        for (name, kind) in FAMILIES {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}\n{text}"
            );
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "no TYPE for {name}\n{text}"
            );
        }
        assert!(
            text.contains("lingma_gw_build_info{version=\"1.2.3\"} 1\n"),
            "{text}"
        );
        assert!(text.contains(
            "lingma_gw_http_requests_total{method=\"POST\",route=\"/v1/chat/completions\",status=\"200\"} 1\n"
        ));
        assert!(text.contains("lingma_gw_prompt_tokens_total 10\n"));
        assert!(text.contains("lingma_gw_completion_tokens_total 5\n"));
        assert!(text.contains("lingma_gw_upstream_errors_total{kind=\"timeout\"} 1\n"));
        assert!(text.contains("lingma_gw_instance_restarts_total{instance=\"inst-0\"} 1\n"));
        assert!(
            text.contains("lingma_gw_tool_calls_total{outcome=\"parsed\",syntax=\"hermes\"} 1\n")
        );
        assert!(text.contains("lingma_gw_question_bytes_total{reuse=\"true\"} 120\n"));
    }

    #[test]
    fn families_without_observations_render_for_scalars_and_chat_duration() {
        let text = Metrics::new().render();
        assert!(text.contains(&format!(
            "lingma_gw_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(text.contains("lingma_gw_chat_duration_seconds_count{stream=\"false\"} 0"));
        assert!(text.contains("lingma_gw_chat_duration_seconds_count{stream=\"true\"} 0"));
        assert!(text.contains("lingma_gw_chats_in_flight 0"));
    }

    #[test]
    fn overhead_buckets_go_down_to_50_microseconds() {
        let text = exercised().render();
        assert!(
            text.contains("lingma_gw_gateway_overhead_seconds_bucket{le=\"0.00005\"} 0\n"),
            "{text}"
        );
        assert!(text.contains("lingma_gw_gateway_overhead_seconds_bucket{le=\"0.0001\"} 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.upstream_error("quote\" back\\slash\nnewline");
        let text = m.render();
        assert!(
            text.contains(
                r#"lingma_gw_upstream_errors_total{kind="quote\" back\\slash\nnewline"} 1"#
            ),
            "{text}"
        );
        // Every sample line is still one line.
        for line in text.lines() {
            assert!(
                line.starts_with('#') || line.starts_with("lingma_gw_"),
                "broken line: {line:?}"
            );
        }
    }

    #[test]
    fn instance_state_is_one_hot() {
        let m = Metrics::new();
        let states = ["starting", "ready", "failed"];
        m.set_instance_state("inst-0", "starting", &states);
        m.set_instance_state("inst-0", "ready", &states);
        let get = |s: &str| m.instance_state.with_label_values(&["inst-0", s]).get();
        assert_eq!((get("starting"), get("ready"), get("failed")), (0, 1, 0));
        m.set_instance_state("inst-0", "weird", &states);
        assert_eq!(
            (get("starting"), get("ready"), get("failed"), get("weird")),
            (0, 0, 0, 1)
        );
        m.remove_instance("inst-0", &["starting", "ready", "failed", "weird"]);
        assert!(!m.render().contains("inst-0"));
    }

    #[test]
    fn in_flight_guard_counts_until_dropped() {
        let m = Metrics::new();
        let g1 = m.chat_in_flight();
        let g2 = m.chat_in_flight();
        assert_eq!(m.chats_in_flight.get(), 2);
        drop(g1);
        assert_eq!(m.chats_in_flight.get(), 1);
        drop(g2);
        assert_eq!(m.chats_in_flight.get(), 0);
    }

    #[test]
    fn sync_copies_monotonic_counters() {
        let m = Metrics::new();
        let mut stats = CacheStats {
            hits: 3,
            misses: 2,
            evictions: 1,
            expirations: 4,
            ..CacheStats::default()
        };
        m.sync_session_cache(&stats);
        m.sync_session_cache(&stats);
        assert_eq!(m.session_cache_hits.get(), 3);
        assert_eq!(m.session_cache_misses.get(), 2);
        assert_eq!(m.session_cache_evictions.get(), 1);
        assert_eq!(m.session_cache_expirations.get(), 4);
        stats.hits = 5;
        m.sync_session_cache(&stats);
        assert_eq!(m.session_cache_hits.get(), 5);
        m.sync_admission(7, 2);
        m.sync_admission(3, 2);
        assert_eq!(m.admission_waiting.get(), 3);
        assert_eq!(m.admission_rejections.get(), 2);
    }

    #[test]
    fn registries_are_independent() {
        let a = Metrics::new();
        let b = Metrics::new();
        a.stream_disconnects.inc();
        assert!(a.render().contains("lingma_gw_stream_disconnects_total 1"));
        assert!(b.render().contains("lingma_gw_stream_disconnects_total 0"));
    }
}
