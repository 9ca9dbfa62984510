package service

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/streamerd/streamer/match"
)

// metrics are the node's Prometheus instruments, registered in the node's own
// registry (never the global one), so several nodes can live in one process.
type metrics struct {
	registry *prometheus.Registry

	published       *prometheus.CounterVec // events received by Publish, by result
	eventsProcessed prometheus.Counter     // events consumed from the log
	eventsMatched   prometheus.Counter     // events with at least one match
	matches         prometheus.Counter     // event × subscription pairs
	controlEntries  *prometheus.CounterVec // control entries applied, by kind
	deadLetters     prometheus.Counter
	outboxBatches   prometheus.Counter // outbox entries appended
	deliveries      prometheus.Counter // Delivery messages sent
	deliveredEvents prometheus.Counter // EventMatch entries sent
	resyncs         prometheus.Counter
	latency         prometheus.Histogram // event timestamp → send
	outboxLag       prometheus.Histogram // outbox append → send
	partitions      prometheus.Gauge

	leaseChanges       *prometheus.CounterVec // by change: acquired, released, lost, expired
	eventsDeduplicated prometheus.Counter
	pending            *prometheus.GaugeVec // by partition, owned ones only
	lag                *prometheus.GaugeVec // by partition, owned ones only
	outboxMax          prometheus.Gauge
	outboxTotal        prometheus.Gauge
	backendUp          prometheus.Gauge
	backendProbeErrors prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &metrics{registry: reg}

	m.published = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamer_publish_events_total",
		Help: "Events received by Ingest.Publish, by result (appended or rejected).",
	}, []string{"result"})
	m.eventsProcessed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_events_processed_total",
		Help: "Change events consumed from the event log by this node's partition consumers.",
	})
	m.eventsMatched = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_events_matched_total",
		Help: "Change events that matched at least one subscription.",
	})
	m.matches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_matches_total",
		Help: "Matches: pairs of (event, subscription) routed to an outbox.",
	})
	m.controlEntries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamer_control_entries_total",
		Help: "Control entries applied by partition consumers, by kind.",
	}, []string{"kind"})
	m.deadLetters = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_dead_letters_total",
		Help: "Event-log entries set aside as dead letters (undecodable or malformed).",
	})
	m.outboxBatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_outbox_batches_total",
		Help: "Batches appended to gateway outboxes.",
	})
	m.deliveries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_deliveries_sent_total",
		Help: "Delivery messages sent to gateways.",
	})
	m.deliveredEvents = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_delivered_matches_total",
		Help: "Event matches sent to gateways inside Delivery messages.",
	})
	m.resyncs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_resyncs_total",
		Help: "Resync messages sent to gateways (outbox entries lost before delivery).",
	})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "streamer_end_to_end_latency_seconds",
		Help:    "Time from an event's source timestamp (timestamp_ms) to its Delivery being sent; events without a timestamp are not observed.",
		Buckets: prometheus.ExponentialBucketsRange(0.0005, 30, 20),
	})
	m.outboxLag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "streamer_outbox_lag_seconds",
		Help:    "Time an outbox entry waited between being appended and being sent to its gateway.",
		Buckets: prometheus.ExponentialBucketsRange(0.0005, 30, 20),
	})
	m.partitions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamer_partitions_owned",
		Help: "Event-log partitions this node currently consumes.",
	})
	m.leaseChanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "streamer_lease_changes_total",
		Help: "Partition lease changes of this node, by change: acquired, released (rebalance or shutdown), lost (taken by another node) or expired (not renewed in time).",
	}, []string{"change"})
	for _, c := range []string{"acquired", "released", "lost", "expired"} {
		m.leaseChanges.WithLabelValues(c)
	}
	m.eventsDeduplicated = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_events_deduplicated_total",
		Help: "Change events dropped because an event with the same id was routed recently in the same partition (producer replays).",
	})
	m.pending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "streamer_partition_pending_entries",
		Help: "Entries of an owned partition delivered to the consumer group and not acknowledged yet (XPENDING), refreshed every few seconds.",
	}, []string{"partition"})
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "streamer_partition_lag_entries",
		Help: "Entries of an owned partition not yet delivered to the consumer group (XINFO GROUPS lag), refreshed every few seconds; absent when the backend cannot tell.",
	}, []string{"partition"})
	m.outboxMax = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamer_outbox_entries_max",
		Help: "Largest outbox (entries) among the gateways whose session this node holds, refreshed every few seconds.",
	})
	m.outboxTotal = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamer_outbox_entries",
		Help: "Entries in the outboxes of the gateways whose session this node holds, refreshed every few seconds.",
	})
	m.backendUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "streamer_backend_up",
		Help: "1 when the last probe of the backend succeeded, else 0.",
	})
	m.backendProbeErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "streamer_backend_probe_failures_total",
		Help: "Backend probes that failed or timed out.",
	})
	for _, c := range []prometheus.Collector{
		m.published, m.eventsProcessed, m.eventsMatched, m.matches, m.controlEntries, m.deadLetters,
		m.outboxBatches, m.deliveries, m.deliveredEvents, m.resyncs, m.latency, m.outboxLag,
		m.partitions, m.leaseChanges, m.eventsDeduplicated, m.pending, m.lag, m.outboxMax, m.outboxTotal,
		m.backendUp, m.backendProbeErrors,
	} {
		f(c)
	}

	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamer_sessions",
		Help: "Registered gateway sessions open on this node.",
	}, func() float64 { return float64(n.sessions.count()) }))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamer_subscriptions_indexed",
		Help: "Subscriptions in the match indexes of the partitions this node owns.",
	}, func() float64 { return float64(n.indexedSubscriptions()) }))

	stats := func(pick func(match.Stats) float64) func() float64 {
		return func() float64 { return pick(n.engine.Stats()) }
	}
	f(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "streamer_cel_cache_hits_total", Help: "CEL compilations answered from the program cache.",
	}, stats(func(s match.Stats) float64 { return float64(s.CELCacheHits) })))
	f(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "streamer_cel_cache_misses_total", Help: "CEL compilations that built a new program.",
	}, stats(func(s match.Stats) float64 { return float64(s.CELCacheMisses) })))
	f(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "streamer_cel_cache_evictions_total", Help: "CEL programs evicted from the size-bounded cache.",
	}, stats(func(s match.Stats) float64 { return float64(s.CELCacheEvictions) })))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "streamer_cel_cache_size", Help: "CEL programs in the cache.",
	}, stats(func(s match.Stats) float64 { return float64(s.CELCacheLen) })))
	f(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "streamer_cel_evaluations_total", Help: "CEL evaluations.",
	}, stats(func(s match.Stats) float64 { return float64(s.CELEvals) })))
	f(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "streamer_cel_evaluation_errors_total", Help: "CEL evaluations that failed (counted as no match).",
	}, stats(func(s match.Stats) float64 { return float64(s.CELEvalErrors) })))

	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// forgetPartition drops the per-partition series of a partition this node
// no longer owns.
func (m *metrics) forgetPartition(p int) {
	label := strconv.Itoa(p)
	m.pending.DeleteLabelValues(label)
	m.lag.DeleteLabelValues(label)
}
