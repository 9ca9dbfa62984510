package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/streamerd/streamer/puller"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/redis"
)

const pullerSynopsis = `puller --mongo URI --redis URL [flags]

Tails MongoDB change streams into Streamer's event log in Redis: every insert,
update, replace and delete of the watched database (or of --collections)
becomes a change event in the partition of its tenant's collection, and the
change stream's resume token is saved in Redis after the events up to it are
appended, so a restart replays events and never skips one.

Run two or more pullers with the same --name for high availability: one holds
the leader lease in Redis and reads, the others stand by and take over from
the saved token within --lease-ttl of the leader's failure.

MongoDB must be a replica set or sharded cluster (change streams need an
oplog). The puller stops, with an error saying what to do, when the stream is
invalidated or a watched collection is dropped or renamed, and when the saved
token is no longer in the oplog (--start-from-now then starts from the
current time, leaving a gap).

--redis is required: a puller writing to a private in-memory store would feed
nobody. For a single process without Redis, run the puller inside the node
with 'streamer serve --mongo URI' (embedded mode).

Admin HTTP on --http: /metrics (Prometheus), /healthz, /readyz. Every flag can
also be set through an environment variable: --mongo is STREAMER_MONGO,
--start-from-now is STREAMER_START_FROM_NOW, and so on; flags win.`

func runPuller(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("puller", pullerSynopsis, sio)
	mongoURI := fs.String("mongo", "", "MongoDB connection `URI` (a replica set or sharded cluster); required")
	db := fs.String("db", "", "`database` to watch (default: the database named in the --mongo URI)")
	collections := fs.String("collections", "", "comma-separated `list` of collections to watch (default: every collection of --db)")
	name := fs.String("name", puller.DefaultName, "`name` of this puller's stream: pullers of one name share a checkpoint and a leader lease")
	redisURL := fs.String("redis", "", "Redis `URL` of the event log (redis://host:port, rediss://, unix://, cluster=true …); required")
	partitions := fs.Int("partitions", store.DefaultPartitions, "number of event-log partitions; must match the streamer nodes")
	tenantField := fs.String("tenant-field", puller.DefaultTenantField, "dotted document `field` holding the tenant; \"-\" to always use --default-tenant")
	defaultTenant := fs.String("default-tenant", "", "`tenant` of documents without the tenant field")
	collectionField := fs.String("collection-field", "", "dotted document `field` naming the collection to publish under (default: the MongoDB collection)")
	idField := fs.String("id-field", "_id", "dotted document `field` holding the document id")
	preImages := fs.Bool("pre-images", false, "publish pre-images (fullDocumentBeforeChange: whenAvailable; enable changeStreamPreAndPostImages on the collections)")
	startFromNow := fs.Bool("start-from-now", false, "when the saved resume token is no longer usable, start from the current time instead of stopping (changes in between are lost)")
	batch := fs.Int("batch", puller.DefaultBatch, "most `events` appended (and checkpointed) at once")
	maxDelay := fs.Duration("max-delay", puller.DefaultMaxDelay, "longest a read event waits to be appended")
	leaseTTL := fs.Duration("lease-ttl", puller.DefaultLeaseTTL, "leader lease lifetime: a standby takes over about this long after the leader fails")
	owner := fs.String("owner", "", "`name` of this process in the leader lease and logs (default: hostname plus a random suffix)")
	httpAddr := fs.String("http", ":7072", "`address` of the admin HTTP listener (/metrics, /healthz, /readyz)")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}

	usageErr := func(format string, args ...any) error {
		fmt.Fprintf(sio.err, format+"\n", args...)
		return errUsage
	}
	logger, err := newLogger(sio, *logLevel, *logFormat)
	if err != nil {
		return usageErr("%v", err)
	}
	switch {
	case *mongoURI == "":
		return usageErr("--mongo is required (for example --mongo 'mongodb://mongo:27017/shop?replicaSet=rs0')")
	case *redisURL == "":
		return usageErr("--redis is required: the puller appends to the event log shared by the streamer nodes.\n" +
			"Without Redis, run the puller inside the node instead: streamer serve --mongo URI")
	case *partitions <= 0 || *batch <= 0 || *maxDelay <= 0 || *leaseTTL < 3*time.Millisecond:
		return usageErr("--partitions, --batch, --max-delay and --lease-ttl must be positive")
	}
	var colls []string
	for c := range strings.SplitSeq(*collections, ",") {
		if c = strings.TrimSpace(c); c != "" {
			colls = append(colls, c)
		}
	}

	watcher, client, err := puller.ConnectMongo(ctx, *mongoURI, *db, colls)
	if err != nil {
		return usageErr("--mongo: %v", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
	}()

	backend, err := redis.New(ctx, redis.Config{URL: *redisURL, Partitions: *partitions, Logger: logger})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer backend.Close()
	p, err := puller.New(puller.Config{
		Name:    *name,
		Owner:   *owner,
		Watcher: watcher,
		Mapping: puller.Mapping{
			TenantField:     *tenantField,
			DefaultTenant:   *defaultTenant,
			CollectionField: *collectionField,
			IDField:         *idField,
		},
		PreImages:    *preImages,
		StartFromNow: *startFromNow,
		Batch:        *batch,
		MaxDelay:     *maxDelay,
		LeaseTTL:     *leaseTTL,
		Logger:       logger,
	}, backend)
	if err != nil {
		return err
	}

	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	hs := &http.Server{Handler: p.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := hs.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("http server: %w", err))
		}
	})
	logger.Info("listening", "http_addr", hl.Addr().String(), "puller", *name, "owner", p.Owner(),
		"database", watcher.Database(), "collections", colls, "partitions", *partitions)

	runErr := p.Run(ctx)

	shutCtx, shutCancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer shutCancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		hs.Close()
	}
	wg.Wait()
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return runErr
}
