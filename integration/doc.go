// Package integration holds the end-to-end tests and benchmarks that run
// whole Streamer deployments the way users do: nodes, gateways (through the
// client library) and producers talking real gRPC. It has no code of its
// own; everything is in its _test.go files.
//
// BenchmarkEmbeddedEndToEnd measures the embedded mode (one node over the
// in-memory backend): go test -run '^$' -bench EmbeddedEndToEnd ./integration/
package integration
