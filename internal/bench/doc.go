// Package bench is Streamer's load harness, the library behind `streamer
// bench`.
//
// A run starts N streamer nodes in this process on one backend (the
// embedded in-memory one, or Redis), connects G gateways to them with the
// real client library over loopback gRPC, gives each gateway S
// subscriptions drawn from a mix of equality filters, document ids and CEL
// expressions, publishes change events through the Ingest service at a
// fixed rate (or as fast as the system absorbs), and measures what the
// gateways receive: publish → gateway latency in an HDR-style histogram,
// events and deliveries per second, second by second.
//
// Every run verifies completeness: the (event, subscription) pairs that
// should have been delivered are computed by brute force — each published
// document evaluated with match.Compiled.Match against every distinct
// criterion of its collection, without the node's index — and compared with
// what arrived (lost, duplicates, unexpected). In the same run it measures
// two baselines: the naive design where every gateway evaluates all of its
// subscriptions against every event, and, in Redis mode, the raw Redis
// Streams loop (XADD → XREADGROUP → XACK) that is the ceiling of Redis mode.
//
// The harness, the nodes and the gateways share this process's CPUs (Redis
// runs apart): figures are for the whole system on one machine, not for a
// node alone. The package does not start Redis, and it is not a test
// helper: it never calls testing.
package bench
