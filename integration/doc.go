// Package integration holds the end-to-end tests and benchmarks that run
// whole Streamer deployments the way users do: nodes, gateways (through the
// client library) and producers talking real gRPC. It has no code of its
// own; everything is in its _test.go files.
//
// The pool tests (pool_test.go) run a Redis-coordinated pool: a real
// redis-server started by the test (internal/redistest; the tests fail,
// never skip, without it) and nodes that are separate processes of the real
// binary, built once with go build. They check, with expectations computed
// independently of the node's matching, that every (event, subscription)
// pair arrives, in partition order, with no foreign tenant's data, across
// node crashes (kill -9), scaling, a Redis restart, vanished and slow
// gateways and poison log entries. Each logs its figures (events, times,
// duplicates, takeover time).
//
// Benchmarks:
//
//	go test -run '^$' -bench EmbeddedEndToEnd ./integration/  # one node, in-memory backend
//	go test -run '^$' -bench RedisEndToEnd -benchtime 100000x ./integration/  # 1 and 3 nodes on Redis
package integration
