// Command testferret runs FerretDB v1 with its SQLite backend, a MongoDB
// wire protocol server in pure Go, for Streamer's tests of its MongoDB
// snapshot source (MongoDB itself cannot run on the test machines). It is
// its own module so that FerretDB stays out of Streamer's dependencies.
//
//	testferret -listen 127.0.0.1:PORT -dir DIR
//
// It serves until SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP `address` to serve the MongoDB wire protocol on")
	dir := flag.String("dir", "", "`directory` of the SQLite databases (required)")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "testferret: -dir is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Handler:   "sqlite",
		SQLiteURL: "file:" + *dir + "/",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testferret:", err)
		os.Exit(1)
	}
	if err := f.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "testferret:", err)
		os.Exit(1)
	}
}
