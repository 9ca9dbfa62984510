// Package service is the streamer node: it serves the Streamer (gateway
// sessions) and Ingest (publish) gRPC services, owns event-log partitions
// through leases and runs one consumer per owned partition (decode, soft-delete
// transform, match, route into per-gateway outboxes), pumps each session's
// outbox to its gateway, expires gateways that stopped heartbeating, and
// exposes admin HTTP (Prometheus metrics, health and readiness).
//
// It holds no state of its own beyond caches: subscriptions, outboxes, leases
// and sessions live in a store.Backend, so the same code runs embedded (one
// node over store/memory, owning every partition) and as a pool of nodes over
// a shared Redis backend. In a pool, nodes coordinate only through the
// backend: partition leases taken by fair share and fenced by the node's
// clock (ownership.go, fence.go), the consumer group's pending entries
// claimed in order by a partition's next owner (consumer.go), gateway
// sessions superseded by epoch on any node (session.go), and gateway expiry
// under a pool-wide lock (janitor.go). It does not listen on sockets: the
// caller creates the gRPC server and HTTP server and mounts what
// NewGRPCServer and AdminHandler provide.
package service
