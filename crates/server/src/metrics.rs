//! Prometheus metrics, rendered at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
    /// `ok` or the error code.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Registry,
    pub connected_sockets: Gauge,
    pub connections: Counter,
    pub refused_connections: Family<ReasonLabels, Counter>,
    pub disconnections: Family<ReasonLabels, Counter>,
    pub events: Family<EventLabels, Counter>,
    pub event_seconds: Histogram,
    pub timers_fired: Family<ReasonLabels, Counter>,
    pub slow_consumers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let connected_sockets = Gauge::default();
        let connections = Counter::default();
        let refused_connections = Family::<ReasonLabels, Counter>::default();
        let disconnections = Family::<ReasonLabels, Counter>::default();
        let events = Family::<EventLabels, Counter>::default();
        let event_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        let timers_fired = Family::<ReasonLabels, Counter>::default();
        let slow_consumers = Counter::default();
        registry.register(
            "connected_sockets",
            "Sockets connected to this instance",
            connected_sockets.clone(),
        );
        registry.register(
            "connections",
            "Accepted Socket.IO connections",
            connections.clone(),
        );
        registry.register(
            "refused_connections",
            "Refused handshakes by reason",
            refused_connections.clone(),
        );
        registry.register(
            "disconnections",
            "Socket disconnections by reason",
            disconnections.clone(),
        );
        registry.register(
            "events",
            "Client events handled, by event and outcome",
            events.clone(),
        );
        registry.register(
            "event_seconds",
            "Time to handle a client event",
            event_seconds.clone(),
        );
        registry.register(
            "timers_fired",
            "Deadline-queue timers fired by this instance, by kind",
            timers_fired.clone(),
        );
        registry.register(
            "slow_consumers",
            "Sockets disconnected for not reading fast enough",
            slow_consumers.clone(),
        );
        Self {
            registry,
            connected_sockets,
            connections,
            refused_connections,
            disconnections,
            events,
            event_seconds,
            timers_fired,
            slow_consumers,
        }
    }

    pub fn count_event(&self, event: &str, outcome: &str, seconds: f64) {
        self.events
            .get_or_create(&EventLabels {
                event: event.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.event_seconds.observe(seconds);
    }

    pub fn reason(reason: impl Into<String>) -> ReasonLabels {
        ReasonLabels {
            reason: reason.into(),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_events_show_up_in_the_exposition() {
        let m = Metrics::new();
        m.count_event("users:get", "ok", 0.001);
        m.count_event("users:get", "INVALID_PAYLOAD", 0.001);
        m.connected_sockets.set(3);
        let text = m.render();
        assert!(
            text.contains(
                r#"switchboard_events_total{event="users:get",outcome="INVALID_PAYLOAD"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("switchboard_connected_sockets 3"), "{text}");
    }
}
