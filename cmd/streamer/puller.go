package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/streamerd/streamer/internal/buildinfo"
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

// pullerOptions are puller's flags.
type pullerOptions struct {
	mongoURI, db, collections, name, redisURL     string
	partitions, batch, waitReplicas               int
	waitTimeout                                   time.Duration
	tenantField, defaultTenant, collectionField   string
	idField, owner, httpAddr, logLevel, logFormat string
	preImages, startFromNow                       bool
	maxDelay, leaseTTL                            time.Duration
}

// pullerFlags defines puller's flags on fs.
func pullerFlags(fs *flag.FlagSet) *pullerOptions {
	o := &pullerOptions{}
	fs.StringVar(&o.mongoURI, "mongo", "", "MongoDB connection `URI` (a replica set or sharded cluster); required")
	fs.StringVar(&o.db, "db", "", "`database` to watch (default: the database named in the --mongo URI)")
	fs.StringVar(&o.collections, "collections", "", "comma-separated `list` of collections to watch (default: every collection of --db)")
	fs.StringVar(&o.name, "name", puller.DefaultName, "`name` of this puller's stream: pullers of one name share a checkpoint and a leader lease")
	fs.StringVar(&o.redisURL, "redis", "", "Redis `URL` of the event log (redis://host:port, rediss://, unix://, cluster=true …); required")
	fs.IntVar(&o.partitions, "partitions", store.DefaultPartitions, "number of event-log partitions; must match the streamer nodes")
	waitFlags(fs, &o.waitReplicas, &o.waitTimeout)
	fs.StringVar(&o.tenantField, "tenant-field", puller.DefaultTenantField, "dotted document `field` holding the tenant; \"-\" to always use --default-tenant")
	fs.StringVar(&o.defaultTenant, "default-tenant", "", "`tenant` of documents without the tenant field")
	fs.StringVar(&o.collectionField, "collection-field", "", "dotted document `field` naming the collection to publish under (default: the MongoDB collection)")
	fs.StringVar(&o.idField, "id-field", "_id", "dotted document `field` holding the document id")
	fs.BoolVar(&o.preImages, "pre-images", false, "publish pre-images (fullDocumentBeforeChange: whenAvailable; enable changeStreamPreAndPostImages on the collections)")
	fs.BoolVar(&o.startFromNow, "start-from-now", false, "when the saved resume token is no longer usable, start from the current time instead of stopping (changes in between are lost)")
	fs.IntVar(&o.batch, "batch", puller.DefaultBatch, "most `events` appended (and checkpointed) at once")
	fs.DurationVar(&o.maxDelay, "max-delay", puller.DefaultMaxDelay, "longest a read event waits to be appended")
	fs.DurationVar(&o.leaseTTL, "lease-ttl", puller.DefaultLeaseTTL, "leader lease lifetime: a standby takes over about this long after the leader fails")
	fs.StringVar(&o.owner, "owner", "", "`name` of this process in the leader lease and logs (default: hostname plus a random suffix)")
	fs.StringVar(&o.httpAddr, "http", ":7072", "`address` of the admin HTTP listener (/metrics, /healthz, /readyz)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text or json")
	return o
}

// validate checks the flags that parsing alone does not.
func (o *pullerOptions) validate() error {
	switch {
	case o.mongoURI == "":
		return errors.New("--mongo is required (for example --mongo 'mongodb://mongo:27017/shop?replicaSet=rs0')")
	case o.redisURL == "":
		return errors.New("--redis is required: the puller appends to the event log shared by the streamer nodes.\n" +
			"Without Redis, run the puller inside the node instead: streamer serve --mongo URI")
	case o.partitions <= 0 || o.batch <= 0 || o.maxDelay <= 0 || o.leaseTTL < 3*time.Millisecond:
		return errors.New("--partitions, --batch, --max-delay and --lease-ttl must be positive")
	case o.waitReplicas < 0 || o.waitTimeout <= 0:
		return errors.New("--redis-wait-replicas must not be negative and --redis-wait-timeout must be positive")
	}
	return nil
}

// config is the puller's configuration from the flags.
func (o *pullerOptions) config(w puller.Watcher, logger *slog.Logger) puller.Config {
	return puller.Config{
		Name:    o.name,
		Owner:   o.owner,
		Watcher: w,
		Mapping: puller.Mapping{
			TenantField:     o.tenantField,
			DefaultTenant:   o.defaultTenant,
			CollectionField: o.collectionField,
			IDField:         o.idField,
		},
		PreImages:    o.preImages,
		StartFromNow: o.startFromNow,
		Batch:        o.batch,
		MaxDelay:     o.maxDelay,
		LeaseTTL:     o.leaseTTL,
		Logger:       logger,
	}
}

func runPuller(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("puller", pullerSynopsis, sio)
	o := pullerFlags(fs)
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(sio, o.logLevel, o.logFormat)
	if err != nil {
		return usageError(sio, err)
	}
	if err := o.validate(); err != nil {
		return usageError(sio, err)
	}
	colls := splitList(o.collections)
	watcher, client, err := puller.ConnectMongo(ctx, o.mongoURI, o.db, colls)
	if err != nil {
		return usageError(sio, fmt.Errorf("--mongo: %v", err))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = client.Disconnect(dctx)
	}()

	redis.SetLogger(logger)
	backend, err := redis.New(ctx, redis.Config{URL: o.redisURL, Partitions: o.partitions, Logger: logger,
		WaitReplicas: o.waitReplicas, WaitTimeout: o.waitTimeout})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	defer backend.Close()
	p, err := puller.New(o.config(watcher, logger), backend)
	if err != nil {
		return err
	}
	p.Registry().MustRegister(buildinfo.Collector()) // its own process: say which build
	logFields := []any{"puller", o.name, "owner", p.Owner(), "database", watcher.Database(), "collections", colls, "partitions", o.partitions}
	return o.run(ctx, p, logger, logFields)
}

// run serves the puller's admin HTTP and runs the puller until ctx is done,
// it stops, or the server fails.
func (o *pullerOptions) run(ctx context.Context, p *puller.Puller, logger *slog.Logger, logFields []any) error {
	hl, err := net.Listen("tcp", o.httpAddr)
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
	logger.Info("listening", append([]any{"http_addr", hl.Addr().String()}, logFields...)...)

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
