package service

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/streamerd/streamer/internal/buildinfo"
	"github.com/streamerd/streamer/match"
)

// metrics are the node's Prometheus instruments, registered in the node's own
// registry (never the global one), so several nodes can live in one process.
type metrics struct {
	registry *prometheus.Registry

	published         *prometheus.CounterVec // events received by Publish, by result
	eventsProcessed   prometheus.Counter     // events consumed from the log
	eventsMatched     prometheus.Counter     // events with at least one match
	matches           prometheus.Counter     // event × subscription pairs
	controlEntries    *prometheus.CounterVec // control entries applied, by kind
	deadLetters       prometheus.Counter
	celOverLimit      *prometheus.CounterVec // CEL evaluations stopped at the cost limit, by tenant
	celEnded          *prometheus.CounterVec // subscriptions ended for their CEL cost, by tenant
	syntrixStreams    prometheus.Counter     // Syntrix gateway streams opened
	syntrixDataLoss   prometheus.Counter     // Syntrix streams ended because events may have been lost
	snapshots         prometheus.Counter     // snapshots routed (failed ones included)
	snapshotDocuments prometheus.Counter     // documents in them
	tenantTime        *prometheus.CounterVec // partition processing time, by tenant
	tenantDeferred    *prometheus.CounterVec // entries processed after the other tenants', by tenant
	outboxBatches     prometheus.Counter     // outbox entries appended
	deliveries        prometheus.Counter     // Delivery messages sent
	deliveredEvents   prometheus.Counter     // EventMatch entries sent
	resyncs           prometheus.Counter
	latency           prometheus.Histogram // event timestamp → send
	outboxLag         prometheus.Histogram // outbox append → send
	partitions        prometheus.Gauge

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
	r := registrar{prometheus.NewRegistry()}
	m := &metrics{
		registry: r.reg,

		published:       r.counterVec("streamer_publish_events_total", "Events received by Ingest.Publish, by result (appended or rejected).", "result"),
		eventsProcessed: r.counter("streamer_events_processed_total", "Change events consumed from the event log by this node's partition consumers."),
		eventsMatched:   r.counter("streamer_events_matched_total", "Change events that matched at least one subscription."),
		matches:         r.counter("streamer_matches_total", "Matches: pairs of (event, subscription) routed to an outbox."),
		controlEntries:  r.counterVec("streamer_control_entries_total", "Control entries applied by partition consumers, by kind.", "kind"),
		deadLetters:     r.counter("streamer_dead_letters_total", "Event-log entries set aside as dead letters (undecodable or malformed)."),
		celOverLimit: r.counterVec("streamer_cel_over_limit_total",
			"CEL evaluations stopped at the cost limit (--cel-cost-limit), by tenant.", "tenant"),
		celEnded: r.counterVec("streamer_cel_ended_subscriptions_total",
			"Subscriptions the node ended because their CEL criterion ran over the cost limit several times in a row, by tenant.", "tenant"),
		syntrixStreams:    r.counter("streamer_syntrix_streams_total", "Streams of Syntrix gateways (syntrix.streamer.v1.StreamerService) opened on this node."),
		syntrixDataLoss:   r.counter("streamer_syntrix_data_loss_total", "Syntrix gateway streams ended with DATA_LOSS: events may have been lost (Syntrix's contract has no resync); the gateway reconnects and subscribes again."),
		snapshots:         r.counter("streamer_snapshots_total", "Snapshots (initial result sets) routed to gateways by this node's partition consumers, failed ones included."),
		snapshotDocuments: r.counter("streamer_snapshot_documents_total", "Documents in the snapshots routed to gateways."),
		tenantTime: r.counterVec("streamer_tenant_processing_seconds_total",
			"Time this node's partition consumers spent on each tenant's events (decoding, parsing, matching, routing), by tenant.", "tenant"),
		tenantDeferred: r.counterVec("streamer_tenant_deferred_entries_total",
			"Entries of a tenant over its share of a partition, processed after the other tenants' entries of their read batch, by tenant.", "tenant"),
		outboxBatches:   r.counter("streamer_outbox_batches_total", "Batches appended to gateway outboxes."),
		deliveries:      r.counter("streamer_deliveries_sent_total", "Delivery messages sent to gateways."),
		deliveredEvents: r.counter("streamer_delivered_matches_total", "Event matches sent to gateways inside Delivery messages."),
		resyncs:         r.counter("streamer_resyncs_total", "Resync messages sent to gateways (outbox entries lost before delivery)."),
		latency: r.histogram("streamer_end_to_end_latency_seconds",
			"Time from an event's source timestamp (timestamp_ms) to its Delivery being sent; events without a timestamp are not observed."),
		outboxLag:  r.histogram("streamer_outbox_lag_seconds", "Time an outbox entry waited between being appended and being sent to its gateway."),
		partitions: r.gauge("streamer_partitions_owned", "Event-log partitions this node currently consumes."),

		leaseChanges: r.counterVec("streamer_lease_changes_total",
			"Partition lease changes of this node, by change: acquired, released (rebalance or shutdown), lost (taken by another node) or expired (not renewed in time).", "change"),
		eventsDeduplicated: r.counter("streamer_events_deduplicated_total",
			"Change events dropped because an event with the same id was routed recently in the same partition (producer replays)."),
		pending: r.gaugeVec("streamer_partition_pending_entries",
			"Entries of an owned partition delivered to the consumer group and not acknowledged yet (XPENDING), refreshed every few seconds.", "partition"),
		lag: r.gaugeVec("streamer_partition_lag_entries",
			"Entries of an owned partition not yet delivered to the consumer group (XINFO GROUPS lag), refreshed every few seconds; absent when the backend cannot tell.", "partition"),
		outboxMax:          r.gauge("streamer_outbox_entries_max", "Largest outbox (entries) among the gateways whose session this node holds, refreshed every few seconds."),
		outboxTotal:        r.gauge("streamer_outbox_entries", "Entries in the outboxes of the gateways whose session this node holds, refreshed every few seconds."),
		backendUp:          r.gauge("streamer_backend_up", "1 when the last probe of the backend succeeded, else 0."),
		backendProbeErrors: r.counter("streamer_backend_probe_failures_total", "Backend probes that failed or timed out."),
	}
	for _, c := range []string{"acquired", "released", "lost", "expired"} {
		m.leaseChanges.WithLabelValues(c)
	}

	r.gaugeFunc("streamer_sessions", "Registered gateway sessions open on this node.",
		func() float64 { return float64(n.sessions.count()) })
	r.gaugeFunc("streamer_subscriptions_indexed", "Subscriptions in the match indexes of the partitions this node owns.",
		func() float64 { return float64(n.indexedSubscriptions()) })
	stats := func(pick func(match.Stats) uint64) func() float64 {
		return func() float64 { return float64(pick(n.engine.Stats())) }
	}
	r.counterFunc("streamer_cel_cache_hits_total", "CEL compilations answered from the program cache.",
		stats(func(s match.Stats) uint64 { return s.CELCacheHits }))
	r.counterFunc("streamer_cel_cache_misses_total", "CEL compilations that built a new program.",
		stats(func(s match.Stats) uint64 { return s.CELCacheMisses }))
	r.counterFunc("streamer_cel_cache_evictions_total", "CEL programs evicted from the size-bounded cache.",
		stats(func(s match.Stats) uint64 { return s.CELCacheEvictions }))
	if b, ok := n.cfg.Documents.(interface{ Bytes() int64 }); ok {
		r.gaugeFunc("streamer_snapshot_document_bytes", "Bytes of documents (and ids) the node keeps in memory for snapshots (--snapshot-memory-bytes bounds them).",
			func() float64 { return float64(b.Bytes()) })
	}
	r.gaugeFunc("streamer_cel_cache_size", "CEL programs in the cache.",
		stats(func(s match.Stats) uint64 { return uint64(s.CELCacheLen) }))
	r.counterFunc("streamer_cel_evaluations_total", "CEL evaluations.",
		stats(func(s match.Stats) uint64 { return s.CELEvals }))
	r.counterFunc("streamer_cel_evaluation_errors_total", "CEL evaluations that failed (counted as no match).",
		stats(func(s match.Stats) uint64 { return s.CELEvalErrors }))
	r.counterFunc("streamer_cel_suspended_total", "CEL criteria (per tenant's collection) suspended after evaluations in a row over the cost limit.",
		stats(func(s match.Stats) uint64 { return s.CELSuspended }))

	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
	return m
}

// registrar makes instruments registered in reg.
type registrar struct{ reg *prometheus.Registry }

// registered registers c in reg and returns it.
func registered[C prometheus.Collector](r registrar, c C) C { r.reg.MustRegister(c); return c }

func (r registrar) counter(name, help string) prometheus.Counter {
	return registered(r, prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help}))
}

func (r registrar) counterVec(name, help, label string) *prometheus.CounterVec {
	return registered(r, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label}))
}

func (r registrar) gauge(name, help string) prometheus.Gauge {
	return registered(r, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help}))
}

func (r registrar) gaugeVec(name, help, label string) *prometheus.GaugeVec {
	return registered(r, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{label}))
}

// histogram is a latency histogram from 0.5 ms to 30 s.
func (r registrar) histogram(name, help string) prometheus.Histogram {
	return registered(r, prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help,
		Buckets: prometheus.ExponentialBucketsRange(0.0005, 30, 20)}))
}

func (r registrar) gaugeFunc(name, help string, f func() float64) {
	registered(r, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

func (r registrar) counterFunc(name, help string, f func() float64) {
	registered(r, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// forgetPartition drops the per-partition series of a partition this node
// no longer owns.
func (m *metrics) forgetPartition(p int) {
	label := strconv.Itoa(p)
	m.pending.DeleteLabelValues(label)
	m.lag.DeleteLabelValues(label)
}
