package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/x/mongo/driver/connstring"
	"google.golang.org/grpc"

	"github.com/streamerd/streamer/match"
	"github.com/streamerd/streamer/puller"
	"github.com/streamerd/streamer/service"
	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
	"github.com/streamerd/streamer/store/redis"
)

const serveSynopsis = `serve [flags]

Runs a streamer node: the Streamer gRPC service for gateways and the Ingest
service for producers on --grpc, and admin HTTP on --http (/metrics, /healthz,
/readyz). Without --redis the node runs embedded, with an in-memory backend:
it owns every partition and nothing survives a restart.

With --redis URL the node is one member of a pool that coordinates only
through that Redis: nodes may be added, stopped or killed at any time. Each
takes its fair share of the partitions through leases (--lease-ttl: a killed
node's partitions move after at most 4/3 of it), and gateways may connect to
any node. Every node of a pool must use the same --partitions; a node whose
count differs from the one Redis records refuses to start (exit status 1).
URL forms: redis://[user:pass@]host:port[/db], rediss:// (TLS),
unix:///path/redis.sock, with cluster=true or addr=host:port parameters for
Redis Cluster, or master_name=NAME for Sentinel; other query parameters are
go-redis options (dial_timeout=3s, max_retries=1, …). Connections: each owned
partition and each gateway session held by the node keeps a blocking read
open, so the pool needs about partitions + sessions + 32 connections; set
pool_size=N in the URL (or --redis-pool-size) when a node holds more than a
few hundred sessions.

With --mongo URI the node also runs the MongoDB puller in-process (as
'streamer puller' does, see its --help; the flags are the same, --mongo-db,
--mongo-collections and --puller-name standing for its --db, --collections
and --name): it tails the change streams of the watched database into the
node's own event log. Without --redis that log, and the puller's resume token,
are in memory: a restart starts from the current time, and changes made while
the node was down are never published. With --redis the token is saved in
Redis and several nodes may run with --mongo: they share one leader lease per
--puller-name, one reads and the others stand by. An unreachable MongoDB does
not stop the node: the puller logs its errors and retries, and reports them in
the streamer_puller_* metrics of /metrics (streamer_puller_errors_total,
streamer_puller_leader, streamer_puller_lag_seconds, ...). But when the puller
stops for good (the change stream was invalidated, a watched collection was
dropped or renamed, the resume token is no longer in the oplog and
--start-from-now is not set, authentication failed, MongoDB is not a replica
set) the node shuts down and serve exits with status 1 and the puller's
message: a node never keeps running without its feed. In a Redis pool the
next node with --mongo to take the lead may meet the same error and stop in
turn; run 'streamer puller' as its own process to keep the nodes serving then.

Snapshots (a subscription's initial result set, then the changes after it,
with no gap and no duplicate) come from MongoDB with --mongo: the partition's
owner reads the matching documents at a cluster time (read concern snapshot,
MongoDB 5.0 or later) and delivers the events after it. Every node of a pool
that may own partitions needs --mongo for that. In the embedded mode without
--mongo the node keeps the latest version of every document it has seen (all
of them: the log starts with the process), in at most --snapshot-memory-bytes.
A pool on Redis without --mongo refuses snapshots
(ERROR_CODE_SNAPSHOT_UNAVAILABLE): its log predates the node.

Syntrix's gateways use the node unchanged with --syntrix-tenants: it serves
syntrix.streamer.v1.StreamerService, Syntrix's own streamer contract, over the
node's sessions (docs/SYNTRIX.md), to the listed tenants (Syntrix databases)
only. Syntrix's gateways send no token: with --auth-token, give the service a
listener of its own (--syntrix-grpc ADDR, behind your firewall) or require
client certificates (--tls-client-ca). Where the node would tell a gateway
that events were lost (a Resync), a Syntrix stream ends with DATA_LOSS: its
gateway reconnects and subscribes again.

Every flag can also be set through an environment variable: --auth-token is
STREAMER_AUTH_TOKEN, --gateway-ttl is STREAMER_GATEWAY_TTL, and so on; flags
win over the environment. SIGINT or SIGTERM shuts the node down gracefully:
sessions are closed with a reason, in-flight batches are finished.`

// grpcStopTimeout bounds the graceful stop of the gRPC server after the node
// has closed its sessions; remaining calls are then cut.
const grpcStopTimeout = 5 * time.Second

// mongoOpener opens the change-stream source of serve's embedded puller for
// database db (the one named in uri when db is empty) and collections (all
// when empty). It returns the name of the watched database and a function
// that releases the source once the puller's Run has returned. An
// unreachable server is not an error here: it shows up as change stream
// errors, which the puller retries.
//
// docs is the database the node reads snapshots from (nil: no snapshots).
type mongoOpener func(ctx context.Context, uri, db string, collections []string) (w puller.Watcher, database string, docs *mongo.Database, release func(context.Context) error, err error)

// openMongo is the mongoOpener of the real driver.
func openMongo(ctx context.Context, uri, db string, collections []string) (puller.Watcher, string, *mongo.Database, func(context.Context) error, error) {
	w, client, err := puller.ConnectMongo(ctx, uri, db, collections)
	if err != nil {
		return nil, "", nil, nil, err
	}
	return w, w.Database(), client.Database(w.Database()), client.Disconnect, nil
}

// servePullerFlags names serve's flags that configure the embedded puller
// and mean nothing without --mongo.
var servePullerFlags = []string{"mongo-db", "mongo-collections", "puller-name", "tenant-field", "default-tenant",
	"collection-field", "id-field", "pre-images", "start-from-now", "mongo-snapshot-reads"}

func runServe(ctx context.Context, args []string, sio stdio) error {
	return serve(ctx, args, sio, openMongo)
}

// serveOptions are serve's flags.
type serveOptions struct {
	grpcAddr, httpAddr, redisURL, authToken, nodeID, softDelete string
	metricsToken                                                string
	profiling                                                   bool
	tls                                                         *serverTLS
	grpcTLS                                                     grpc.ServerOption // from tls; nil: plaintext
	tlsMode                                                     string
	authTokenFlag, metricsTokenFlag                             func() (string, error)
	partitions, poolSize, dedupSize, maxDoc, outboxMax          int
	outboxMaxBytes                                              int64
	maxDepth, maxName, maxFilters, maxSubsPerGateway            int
	maxSubsPerTenant                                            int
	celMax, celCache                                            int
	celCost, celWorst                                           uint64
	logMaxLen                                                   int64
	leaseTTL, probeInterval, gatewayTTL                         time.Duration
	logLevel, logFormat                                         string
	gcHeadroom                                                  *int
	snapshotMax                                                 int
	snapshotMemory                                              int64
	mongoDocs                                                   store.Documents // the snapshot source of --mongo
	mongoSnapshotReads                                          bool
	syntrixTenants, syntrixAddr                                 string
	syntrixTTL                                                  time.Duration
	waitReplicas                                                int
	waitTimeout                                                 time.Duration

	// The embedded puller.
	mongoURI, mongoDB, mongoColls, pullerName            string
	tenantField, defaultTenant, collectionField, idField string
	preImages, startFromNow                              bool
}

// serveFlags defines serve's flags on fs.
func serveFlags(fs *flag.FlagSet) *serveOptions {
	o := &serveOptions{}
	fs.StringVar(&o.grpcAddr, "grpc", ":7070", "`address` of the gRPC listener (Streamer and Ingest services)")
	fs.StringVar(&o.httpAddr, "http", ":7071", "`address` of the admin HTTP listener (/metrics, /healthz, /readyz)")
	fs.IntVar(&o.partitions, "partitions", store.DefaultPartitions, "number of event-log partitions (fixed per deployment)")
	fs.StringVar(&o.redisURL, "redis", "", "Redis `URL` of the pool's shared backend (see above); empty = embedded in-memory mode")
	fs.IntVar(&o.poolSize, "redis-pool-size", 0, "Redis connections of this node; 0 = the URL's pool_size, else 2×partitions + 256")
	waitFlags(fs, &o.waitReplicas, &o.waitTimeout)
	fs.DurationVar(&o.leaseTTL, "lease-ttl", service.DefaultLeaseTTL, "lifetime of partition leases, renewed every third of it; a dead node's partitions move after at most 4/3 of it")
	fs.Int64Var(&o.logMaxLen, "log-max-len", store.DefaultMaxLen, "approximate retention of each event-log partition, in entries (Redis mode)")
	fs.IntVar(&o.dedupSize, "dedup-size", service.DefaultDedupSize, "recent event ids remembered per partition to drop producer replays; 0 = off")
	fs.DurationVar(&o.probeInterval, "probe-interval", service.DefaultProbeInterval, "how often the backend is probed for /readyz")
	o.authTokenFlag = secretFlag(fs, "auth-token", "bearer `token` gateways and producers must send; empty = no authentication (development only)")
	o.metricsTokenFlag = secretFlag(fs, "metrics-token", "bearer `token` /metrics requires (empty: open to whoever reaches --http)")
	o.tls = serverTLSFlags(fs)
	fs.BoolVar(&o.profiling, "pprof", false, "serve Go's runtime profiles at /debug/pprof/ on --http, behind --metrics-token")
	fs.StringVar(&o.nodeID, "node-id", "", "`name` of this node in leases and logs (default: hostname plus a random suffix)")
	fs.DurationVar(&o.gatewayTTL, "gateway-ttl", service.DefaultGatewayTTL, "how long a gateway's subscriptions live without a heartbeat")
	fs.IntVar(&o.maxDoc, "max-document-bytes", service.DefaultMaxDocumentBytes, "largest document (and pre-image) Publish accepts, in `bytes`")
	fs.IntVar(&o.maxDepth, "max-document-depth", service.DefaultMaxDocumentDepth, "deepest nesting of arrays and objects in a published document")
	fs.IntVar(&o.maxName, "max-name-bytes", service.DefaultMaxNameBytes, "longest tenant, collection, document, event, subscription or gateway id, in `bytes`")
	fs.IntVar(&o.maxFilters, "max-filters", service.DefaultMaxFilters, "most field filters in one subscription")
	fs.IntVar(&o.maxSubsPerGateway, "max-subscriptions-per-gateway", service.DefaultMaxSubscriptionsPerGateway, "most subscriptions one gateway may hold, pool-wide")
	fs.IntVar(&o.maxSubsPerTenant, "max-subscriptions-per-tenant", service.DefaultMaxSubscriptionsPerTenant, "most subscriptions one tenant may hold over all gateways, pool-wide")
	fs.IntVar(&o.outboxMax, "outbox-max-len", store.DefaultOutboxMaxLen, "entries kept per gateway outbox; a gateway further behind gets a Resync")
	fs.Int64Var(&o.outboxMaxBytes, "outbox-max-bytes", store.DefaultOutboxMaxBytes, "payload `bytes` kept per gateway outbox (the newest entry always); a gateway further behind gets a Resync (-1: no byte cap)")
	fs.StringVar(&o.softDelete, "soft-delete-field", service.DefaultSoftDeleteField, "top-level document `field` whose value true marks a soft-deleted document")
	fs.IntVar(&o.celMax, "cel-max-bytes", match.DefaultMaxCELBytes, "longest CEL expression accepted, in `bytes`")
	fs.Uint64Var(&o.celCost, "cel-cost-limit", match.DefaultCELCostLimit, "runtime cost limit of one CEL evaluation (over it = no match; three in a row end the criterion's subscriptions)")
	fs.Uint64Var(&o.celWorst, "cel-worst-case-limit", match.DefaultCELWorstCaseLimit, "refuse at subscribe a CEL expression whose estimated cost on a document of --max-document-bytes exceeds this")
	fs.IntVar(&o.celCache, "cel-cache-size", 10_000, "compiled CEL programs kept in the cache")
	fs.IntVar(&o.snapshotMax, "snapshot-max-documents", service.DefaultSnapshotMaxDocuments, "most documents in one snapshot (a subscription's initial result set); a larger result is paged (SnapshotEnd.more)")
	fs.Int64Var(&o.snapshotMemory, "snapshot-memory-bytes", memory.DefaultDocumentBytes, "embedded mode: `bytes` of documents kept in memory for snapshots; a collection that would exceed them is dropped and its snapshots refused until restart")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	o.gcHeadroom = gcHeadroomFlag(fs)
	fs.StringVar(&o.logFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&o.syntrixTenants, "syntrix-tenants", "", "serve Syntrix's streamer gRPC service to Syntrix gateways, for these comma-separated `tenants` (Syntrix databases; \"*\": every tenant); empty: not served (see above)")
	fs.StringVar(&o.syntrixAddr, "syntrix-grpc", "", "`address` of a listener of its own for Syntrix's service (with --tls-* like --grpc); empty: on --grpc")
	fs.DurationVar(&o.syntrixTTL, "syntrix-stream-ttl", service.DefaultSyntrixStreamTTL, "how long a Syntrix gateway's stream may stay silent before the node ends it (its gateways heartbeat every 30s)")
	fs.StringVar(&o.mongoURI, "mongo", "", "MongoDB connection `URI` (a replica set or sharded cluster) to tail with an embedded puller (see above); empty = no puller")
	fs.StringVar(&o.mongoDB, "mongo-db", "", "`database` the embedded puller watches (default: the database named in the --mongo URI)")
	fs.StringVar(&o.mongoColls, "mongo-collections", "", "comma-separated `list` of collections the embedded puller watches (default: every collection of --mongo-db)")
	fs.StringVar(&o.pullerName, "puller-name", puller.DefaultName, "`name` of the embedded puller's stream: pullers of one name share a checkpoint and a leader lease")
	fs.StringVar(&o.tenantField, "tenant-field", puller.DefaultTenantField, "dotted document `field` holding the tenant (embedded puller); \"-\" to always use --default-tenant")
	fs.StringVar(&o.defaultTenant, "default-tenant", "", "`tenant` of documents without the tenant field (embedded puller)")
	fs.StringVar(&o.collectionField, "collection-field", "", "dotted document `field` naming the collection to publish under (embedded puller; default: the MongoDB collection)")
	fs.StringVar(&o.idField, "id-field", "_id", "dotted document `field` holding the document id (embedded puller)")
	fs.BoolVar(&o.preImages, "pre-images", false, "embedded puller: publish pre-images (fullDocumentBeforeChange: whenAvailable; enable changeStreamPreAndPostImages on the collections)")
	fs.BoolVar(&o.mongoSnapshotReads, "mongo-snapshot-reads", true, "read snapshots from --mongo at a cluster time (read concern snapshot, MongoDB 5.0+); false for servers without (MongoDB 4.x, FerretDB): a change committed while a snapshot is read may then also arrive after it")
	fs.BoolVar(&o.startFromNow, "start-from-now", false, "embedded puller: when the saved resume token is no longer usable, start from the current time instead of stopping the node (changes in between are lost)")
	return o
}

// validate checks the flags that parsing alone does not; fs tells which
// flags were set.
func (o *serveOptions) validate(fs *flag.FlagSet) error {
	var err error
	if o.authToken, err = o.authTokenFlag(); err != nil {
		return err
	}
	if o.metricsToken, err = o.metricsTokenFlag(); err != nil {
		return err
	}
	if o.outboxMaxBytes == 0 || o.outboxMaxBytes < -1 {
		return errors.New("--outbox-max-bytes must be positive, or -1 for no byte cap")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.syntrixTenants == "" && (set["syntrix-grpc"] || set["syntrix-stream-ttl"]) {
		return errors.New("--syntrix-grpc and --syntrix-stream-ttl configure Syntrix's service, which --syntrix-tenants enables")
	}
	if o.syntrixTenants != "" && o.syntrixTTL <= 0 {
		return errors.New("--syntrix-stream-ttl must be positive")
	}
	if o.syntrixTenants != "" && o.syntrixAddr == "" && o.authToken != "" && o.tls.clientCA == "" {
		return errors.New("--syntrix-tenants with --auth-token: Syntrix's gateways send no token, so give its service a listener of its own (--syntrix-grpc, which you firewall) or require client certificates (--tls-client-ca)")
	}
	if o.snapshotMax <= 0 || o.snapshotMemory <= 0 {
		return errors.New("--snapshot-max-documents and --snapshot-memory-bytes must be positive")
	}
	if o.maxDepth <= 0 || o.maxName <= 0 || o.maxFilters <= 0 || o.maxSubsPerGateway <= 0 || o.maxSubsPerTenant <= 0 {
		return errors.New("--max-document-depth, --max-name-bytes, --max-filters, --max-subscriptions-per-gateway and --max-subscriptions-per-tenant must be positive")
	}
	if o.partitions <= 0 || o.outboxMax <= 0 || o.logMaxLen <= 0 || o.poolSize < 0 || o.dedupSize < 0 || o.leaseTTL < 10*time.Millisecond {
		return errors.New("--partitions, --outbox-max-len, --log-max-len must be positive, --redis-pool-size and --dedup-size not negative, --lease-ttl at least 10ms")
	}
	if o.waitReplicas < 0 || o.waitTimeout <= 0 {
		return errors.New("--redis-wait-replicas must not be negative and --redis-wait-timeout must be positive")
	}
	if o.waitReplicas > 0 && o.redisURL == "" {
		return errors.New("--redis-wait-replicas needs --redis: the embedded mode has no replicas to wait for")
	}
	if o.mongoURI == "" {
		// Only command-line flags are refused: an environment shared with
		// pullers may set STREAMER_TENANT_FIELD and the like.
		var orphans []string
		fs.Visit(func(f *flag.Flag) {
			if _, fromEnv := os.LookupEnv(envName(f.Name)); !fromEnv && slices.Contains(servePullerFlags, f.Name) {
				orphans = append(orphans, "--"+f.Name)
			}
		})
		if len(orphans) > 0 {
			return fmt.Errorf("%s: only meaningful with --mongo URI (these flags configure the embedded puller)", strings.Join(orphans, ", "))
		}
		return nil
	}
	if o.mongoDB == "" {
		cs, err := connstring.ParseAndValidate(o.mongoURI)
		if err != nil {
			return fmt.Errorf("--mongo: %v", err)
		}
		if cs.Database == "" {
			return errors.New("--mongo-db is required: the --mongo URI names no database (mongodb://host/DB)")
		}
	}
	return nil
}

// serve is runServe with the MongoDB connection of the embedded puller
// replaceable, for tests.
func serve(ctx context.Context, args []string, sio stdio, openWatcher mongoOpener) error {
	fs := newFlagSet("serve", serveSynopsis, sio)
	o := serveFlags(fs)
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(sio, o.logLevel, o.logFormat)
	if err != nil {
		return usageError(sio, err)
	}
	gcp, _, err := startGCPolicy(*o.gcHeadroom, logger)
	if err != nil {
		return usageError(sio, err)
	}
	defer gcp.Stop()
	if err := o.validate(fs); err != nil {
		return usageError(sio, err)
	}
	if o.grpcTLS, o.tlsMode, err = o.tls.option(); err != nil {
		return usageError(sio, err)
	}

	// The embedded puller's source is opened before the backend, so that a
	// wrong --mongo is reported as such. The driver connects lazily.
	var src pullerSource
	if o.mongoURI != "" {
		src.collections = splitList(o.mongoColls)
		var release func(context.Context) error
		var docs *mongo.Database
		src.watcher, src.database, docs, release, err = openWatcher(ctx, o.mongoURI, o.mongoDB, src.collections)
		if err != nil {
			return usageError(sio, fmt.Errorf("--mongo: %v", err))
		}
		if docs != nil {
			d := puller.NewDocuments(docs, o.pullerConfig("", nil, nil).Mapping)
			d.SnapshotReads = o.mongoSnapshotReads
			o.mongoDocs = d
		}
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = release(dctx)
		}()
	}

	backend, collectors, err := o.openBackend(ctx, logger)
	if err != nil {
		return err
	}
	defer backend.Close()
	var pullerMetrics *gathererCollector
	if src.watcher != nil {
		// The puller is created after the node (it takes the node's id as
		// its lease owner); its registry is plugged in before any gather.
		pullerMetrics = &gathererCollector{logger: logger}
		collectors = append(collectors, pullerMetrics)
	}
	node, err := service.New(o.nodeConfig(logger, collectors), backend)
	if err != nil {
		return err
	}
	if src.watcher != nil {
		if src.puller, err = puller.New(o.pullerConfig(node.ID(), src.watcher, logger), backend); err != nil {
			return err
		}
		pullerMetrics.g = src.puller.Registry()
	}
	return o.run(ctx, node, src, logger)
}

// pullerSource is the embedded puller and what it reads.
type pullerSource struct {
	watcher     puller.Watcher
	database    string
	collections []string
	puller      *puller.Puller // nil without --mongo
}

// openBackend opens the in-memory backend, or the pool's Redis one with its
// collectors for the node's registry.
func (o *serveOptions) openBackend(ctx context.Context, logger *slog.Logger) (*store.Backend, []prometheus.Collector, error) {
	if o.redisURL == "" {
		return memory.New(memory.Config{Partitions: o.partitions, OutboxMaxLen: int64(o.outboxMax), OutboxMaxBytes: o.outboxMaxBytes}), nil, nil
	}
	return openRedis(ctx, redisOptions{
		url: o.redisURL, poolSize: o.poolSize, partitions: o.partitions,
		maxLen: o.logMaxLen, outboxMaxLen: int64(o.outboxMax), outboxMaxBytes: o.outboxMaxBytes, logger: logger,
		waitReplicas: o.waitReplicas, waitTimeout: o.waitTimeout,
	})
}

// mode names the backend in the log.
func (o *serveOptions) mode() string {
	if o.redisURL == "" {
		return "embedded"
	}
	return "redis"
}

// nodeConfig is the node's configuration from the flags.
func (o *serveOptions) nodeConfig(logger *slog.Logger, collectors []prometheus.Collector) service.Config {
	dedup := o.dedupSize
	if dedup == 0 {
		dedup = -1 // off
	}
	return service.Config{
		NodeID:                     o.nodeID,
		Partitions:                 o.partitions,
		AuthToken:                  o.authToken,
		MetricsToken:               o.metricsToken,
		Profiling:                  o.profiling,
		MaxDocumentBytes:           o.maxDoc,
		MaxDocumentDepth:           o.maxDepth,
		MaxNameBytes:               o.maxName,
		MaxFilters:                 o.maxFilters,
		MaxSubscriptionsPerGateway: o.maxSubsPerGateway,
		MaxSubscriptionsPerTenant:  o.maxSubsPerTenant,
		GatewayTTL:                 o.gatewayTTL,
		OutboxMaxLen:               o.outboxMax,
		OutboxMaxBytes:             o.outboxMaxBytes,
		SoftDeleteField:            o.softDelete,
		Match: match.Config{MaxCELBytes: o.celMax, CELCostLimit: o.celCost, CELCacheSize: o.celCache,
			CELWorstCaseLimit: o.celWorst, MaxDocumentBytes: o.maxDoc},
		Logger:        logger,
		LeaseTTL:      o.leaseTTL,
		DedupSize:     dedup,
		ProbeInterval: o.probeInterval,
		Collectors:    collectors,

		Documents:            o.documents(),
		SnapshotMaxDocuments: o.snapshotMax,
		Syntrix:              o.syntrixConfig(),
	}
}

// syntrixConfig is Syntrix's service configuration (nil: not served).
func (o *serveOptions) syntrixConfig() *service.SyntrixConfig {
	if o.syntrixTenants == "" {
		return nil
	}
	return &service.SyntrixConfig{Tenants: splitList(o.syntrixTenants), StreamTTL: o.syntrixTTL, OwnListener: o.syntrixAddr != ""}
}

// documents is the node's snapshot source: with --mongo the database the
// puller tails (read at a cluster time); in the embedded mode without it
// the documents the node applies, all of them since the event log started
// with the process; none in a pool on Redis without --mongo (the event log
// predates the node).
func (o *serveOptions) documents() store.Documents {
	switch {
	case o.mongoDocs != nil:
		return o.mongoDocs
	case o.redisURL != "" || o.mongoURI != "":
		return nil
	}
	return memory.NewDocuments(o.snapshotMemory)
}

// pullerConfig is the embedded puller's configuration from the flags.
func (o *serveOptions) pullerConfig(owner string, w puller.Watcher, logger *slog.Logger) puller.Config {
	return puller.Config{
		Name:    o.pullerName,
		Owner:   owner,
		Watcher: w,
		Mapping: puller.Mapping{
			TenantField:     o.tenantField,
			DefaultTenant:   o.defaultTenant,
			CollectionField: o.collectionField,
			IDField:         o.idField,
		},
		PreImages:    o.preImages,
		StartFromNow: o.startFromNow,
		Logger:       logger,
	}
}

// run serves node (and runs the embedded puller, if any) until ctx is done
// or a server or the puller fails, then shuts everything down gracefully.
func (o *serveOptions) run(ctx context.Context, node *service.Node, src pullerSource, logger *slog.Logger) error {
	gl, err := net.Listen("tcp", o.grpcAddr)
	if err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	hl, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		gl.Close()
		return fmt.Errorf("http listener: %w", err)
	}
	var extra []grpc.ServerOption
	if o.grpcTLS != nil {
		extra = append(extra, o.grpcTLS)
	}
	gs := node.NewGRPCServer(extra...)
	hs := &http.Server{Handler: node.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	var sl net.Listener
	var ss *grpc.Server
	if o.syntrixAddr != "" && o.syntrixTenants != "" {
		if sl, err = net.Listen("tcp", o.syntrixAddr); err != nil {
			gl.Close()
			hl.Close()
			return fmt.Errorf("syntrix listener: %w", err)
		}
		ss = node.NewSyntrixGRPCServer(extra...)
	}

	// A server failing ends the node as a signal would, with its error.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := gs.Serve(gl); err != nil {
			cancel(fmt.Errorf("grpc server: %w", err))
		}
	})
	wg.Go(func() {
		if err := hs.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			cancel(fmt.Errorf("http server: %w", err))
		}
	})
	attrs := []any{"grpc_addr", gl.Addr().String(), "http_addr", hl.Addr().String(), "node_id", node.ID(), "mode", o.mode(), "transport", o.tlsMode}
	if ss != nil {
		attrs = append(attrs, "syntrix_addr", sl.Addr().String())
		wg.Go(func() {
			if err := ss.Serve(sl); err != nil {
				cancel(fmt.Errorf("syntrix grpc server: %w", err))
			}
		})
	}
	logger.Info("listening", attrs...)
	if o.syntrixTenants != "" {
		logger.Info("serving Syntrix's streamer service (syntrix.streamer.v1.StreamerService) to Syntrix gateways, without a token", "tenants", o.syntrixTenants, "on", cmp.Or(o.syntrixAddr, o.grpcAddr), "client_certificates", o.tls.clientCA != "")
	}
	if src.puller != nil {
		logger.Info("embedded puller starting", "puller", o.pullerName, "database", src.database, "collections", src.collections)
		wg.Go(func() { o.runPuller(ctx, cancel, src.puller, logger) })
	}

	runErr := node.Run(ctx) // returns once sessions are closed and batches finished
	if ss != nil {
		ss.Stop() // its sessions were closed by Run
	}
	stopServers(ctx, gs, hs, logger)
	wg.Wait()
	logger.Info("stopped")

	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return runErr
}

// runPuller runs the embedded puller. A puller that stops for good ends the
// node (cancel): without its feed the node would serve stale data silently.
func (o *serveOptions) runPuller(ctx context.Context, cancel context.CancelCauseFunc, pl *puller.Puller, logger *slog.Logger) {
	err := pl.Run(ctx)
	if err == nil && ctx.Err() != nil {
		return // the node is stopping
	}
	if err == nil {
		err = errors.New("puller: stopped unexpectedly")
	}
	logger.Error("EMBEDDED PULLER STOPPED: shutting the node down; fix the cause, then restart", "puller", o.pullerName, "err", err)
	cancel(fmt.Errorf("embedded puller %q stopped: %w", o.pullerName, err))
}

// stopServers stops the gRPC server gracefully (cutting the calls still
// running after grpcStopTimeout) and shuts the admin HTTP server down.
func stopServers(ctx context.Context, gs *grpc.Server, hs *http.Server, logger *slog.Logger) {
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(grpcStopTimeout):
		logger.Warn("gRPC calls still running after the graceful stop timeout, cutting them", "timeout", grpcStopTimeout)
		gs.Stop()
		<-stopped
	}
	shutCtx, shutCancel := context.WithTimeout(context.WithoutCancel(ctx), grpcStopTimeout)
	defer shutCancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		hs.Close()
	}
}

// newLogger builds the slog logger writing to stderr.
func newLogger(sio stdio, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(sio.err, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(sio.err, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// redisOptions configure openRedis.
type redisOptions struct {
	url            string
	poolSize       int // 0: the URL's pool_size, else 2×partitions + 256
	partitions     int
	maxLen         int64
	outboxMaxLen   int64
	outboxMaxBytes int64
	waitReplicas   int
	waitTimeout    time.Duration
	logger         *slog.Logger
}

// waitFlags defines --redis-wait-replicas and --redis-wait-timeout.
func waitFlags(fs *flag.FlagSet, replicas *int, timeout *time.Duration) {
	fs.IntVar(replicas, "redis-wait-replicas", 0, "after each write that acknowledges data (event appends, outbox writes, checkpoints, subscriptions), WAIT until `N` replicas of its Redis master have it, so that a failover cannot lose it; a write not replicated in time fails and is retried. 0 = do not wait (fastest; a failover can lose the last writes)")
	fs.DurationVar(timeout, "redis-wait-timeout", redis.DefaultWaitTimeout, "longest each WAIT of --redis-wait-replicas waits (below the Redis read_timeout, 3s by default)")
}

// redisConnectTimeout bounds the connection, partition check and setup at
// start.
const redisConnectTimeout = 15 * time.Second

// openRedis connects the pool's Redis backend. It sizes the connection pool
// for the node's blocking reads and counts Redis errors in a metric; the
// returned collectors belong in the node's registry.
func openRedis(ctx context.Context, o redisOptions) (*store.Backend, []prometheus.Collector, error) {
	redis.SetLogger(o.logger)
	u, err := url.Parse(o.url)
	if err != nil {
		return nil, nil, fmt.Errorf("--redis: %w", err)
	}
	q := u.Query()
	switch {
	case o.poolSize > 0:
		q.Set("pool_size", strconv.Itoa(o.poolSize))
	case !q.Has("pool_size"):
		q.Set("pool_size", strconv.Itoa(2*o.partitions+256))
	}
	u.RawQuery = q.Encode()
	client, err := redis.NewClient(u.String())
	if err != nil {
		return nil, nil, fmt.Errorf("--redis %s: %w", u.Redacted(), err)
	}
	errs := redis.CountErrors(client)

	cctx, cancel := context.WithTimeout(ctx, redisConnectTimeout)
	defer cancel()
	backend, err := redis.New(cctx, redis.Config{
		Client: client, Partitions: o.partitions, MaxLen: o.maxLen, OutboxMaxLen: o.outboxMaxLen, OutboxMaxBytes: o.outboxMaxBytes, Logger: o.logger,
		WaitReplicas: o.waitReplicas, WaitTimeout: o.waitTimeout,
	})
	if err != nil {
		_ = client.Close()
		if errors.Is(err, redis.ErrPartitionMismatch) {
			return nil, nil, fmt.Errorf("--partitions %d disagrees with the pool: %w", o.partitions, err)
		}
		return nil, nil, fmt.Errorf("--redis %s: %w", u.Redacted(), err)
	}
	closeBackend := backend.Close
	backend.Close = func() error { return errors.Join(closeBackend(), client.Close()) }
	o.logger.Info("connected to redis", "url", u.Redacted(), "partitions", o.partitions, "pool_size", q.Get("pool_size"), "wait_replicas", o.waitReplicas)
	return backend, []prometheus.Collector{errs}, nil
}

// gathererCollector serves the metrics of a Gatherer (the embedded puller's
// own registry) from the node's registry, through service.Config.Collectors.
// It is an unchecked collector (Describe sends nothing): the registry checks
// the names for consistency at each gather instead. Its Gatherer is set
// before the first gather.
type gathererCollector struct {
	g      prometheus.Gatherer
	logger *slog.Logger
}

func (c *gathererCollector) Describe(chan<- *prometheus.Desc) {}

func (c *gathererCollector) Collect(ch chan<- prometheus.Metric) {
	if c.g == nil {
		return
	}
	mfs, err := c.g.Gather()
	if err != nil {
		// A partial result is still served; failing the node's whole
		// /metrics for it would hide more than it shows.
		c.logger.Warn("gathering the embedded puller's metrics", "err", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if pm, err := constMetric(mf, m); err != nil {
				c.logger.Warn("dropping a metric of the embedded puller", "metric", mf.GetName(), "err", err)
			} else {
				ch <- pm
			}
		}
	}
}

// constMetric rebuilds one gathered sample as a constant metric, created
// timestamp included. Classic histograms only: the puller has no native ones.
func constMetric(mf *dto.MetricFamily, m *dto.Metric) (prometheus.Metric, error) {
	names := make([]string, 0, len(m.GetLabel()))
	values := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		names = append(names, l.GetName())
		values = append(values, l.GetValue())
	}
	desc := prometheus.NewDesc(mf.GetName(), mf.GetHelp(), names, nil)
	switch mf.GetType() {
	case dto.MetricType_COUNTER:
		if ct := m.GetCounter().GetCreatedTimestamp(); ct != nil {
			return prometheus.NewConstMetricWithCreatedTimestamp(desc, prometheus.CounterValue, m.GetCounter().GetValue(), ct.AsTime(), values...)
		}
		return prometheus.NewConstMetric(desc, prometheus.CounterValue, m.GetCounter().GetValue(), values...)
	case dto.MetricType_GAUGE:
		return prometheus.NewConstMetric(desc, prometheus.GaugeValue, m.GetGauge().GetValue(), values...)
	case dto.MetricType_UNTYPED:
		return prometheus.NewConstMetric(desc, prometheus.UntypedValue, m.GetUntyped().GetValue(), values...)
	case dto.MetricType_HISTOGRAM:
		h := m.GetHistogram()
		buckets := make(map[float64]uint64, len(h.GetBucket()))
		for _, b := range h.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), +1) {
				buckets[b.GetUpperBound()] = b.GetCumulativeCount()
			}
		}
		if ct := h.GetCreatedTimestamp(); ct != nil {
			return prometheus.NewConstHistogramWithCreatedTimestamp(desc, h.GetSampleCount(), h.GetSampleSum(), buckets, ct.AsTime(), values...)
		}
		return prometheus.NewConstHistogram(desc, h.GetSampleCount(), h.GetSampleSum(), buckets, values...)
	case dto.MetricType_SUMMARY:
		s := m.GetSummary()
		quantiles := make(map[float64]float64, len(s.GetQuantile()))
		for _, q := range s.GetQuantile() {
			quantiles[q.GetQuantile()] = q.GetValue()
		}
		if ct := s.GetCreatedTimestamp(); ct != nil {
			return prometheus.NewConstSummaryWithCreatedTimestamp(desc, s.GetSampleCount(), s.GetSampleSum(), quantiles, ct.AsTime(), values...)
		}
		return prometheus.NewConstSummary(desc, s.GetSampleCount(), s.GetSampleSum(), quantiles, values...)
	}
	return nil, fmt.Errorf("metric type %s is not supported", mf.GetType())
}
