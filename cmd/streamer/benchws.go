package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/streamerd/streamer/internal/wsbench"
)

const benchWSSynopsis = `bench ws [--workload w1|w2] [--conns N] [--rate R] [--duration D] [--redis URL] [flags]

Fan-out through real WebSockets. Starts a streamer node ("streamer serve",
embedded, or on Redis with --redis) and the reference gateway ("streamer
gateway", no authentication) as child processes of this binary, opens N
WebSocket connections to the gateway on loopback, and publishes R events/s
for --duration after --warmup:
  w1  each connection subscribes to documents whose field k equals its index
      modulo 100 (an event reaches N/100 connections);
  w2  each connection subscribes to the whole collection (an event reaches
      every connection).
Reports publish → WebSocket client latency (p50 p99 p99.9 max), deliveries/s,
the CPU time of the node and gateway processes per delivered message, their
peak RSS, and completeness (lost, duplicates, dropped connections), which
makes the command exit non-zero when not perfect.`

func runBenchWS(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("bench ws", benchWSSynopsis, sio)
	var cfg wsbench.Config
	fs.StringVar(&cfg.Workload, "workload", "w2", "`w1` (equality filter per connection) or `w2` (every connection, every event)")
	fs.IntVar(&cfg.Conns, "conns", 100, "WebSocket connections")
	fs.IntVar(&cfg.Rate, "rate", 1000, "events per second")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the measured phase")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "publishing before measuring")
	fs.StringVar(&cfg.Redis, "redis", "", "Redis `URL` for the node; empty = embedded")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "write CPU profiles of the node and the gateway over the measured phase to `dir` (node.pprof, gateway.pprof)")
	fs.IntVar(&cfg.DocBytes, "doc-bytes", 64, "size of each document's padding field, in `bytes`")
	fs.BoolVar(&cfg.Compression, "compression", false, "permessage-deflate between the gateway and the clients (gateway --ws-compression)")
	fs.StringVar(&cfg.Exe, "exe", "", "streamer `binary` the node and the gateway run from (default: this one), to compare two builds with the same clients")
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	cfg.Progress = sio.err
	res, err := wsbench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	res.WriteSummary(sio.out)
	if f := res.Failures(); len(f) > 0 {
		return fmt.Errorf("bench ws: %w: %v", errIncomplete, f)
	}
	return nil
}

var errIncomplete = errors.New("incomplete run")
