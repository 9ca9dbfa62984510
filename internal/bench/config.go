package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/streamerd/streamer/store"
)

// Defaults of Config, applied by Run to zero fields.
const (
	DefaultNodes            = 1
	DefaultGateways         = 4
	DefaultSubsPerGateway   = 10_000
	DefaultDuration         = 10 * time.Second
	DefaultWarmup           = time.Second
	DefaultCollections      = 16
	DefaultDistinctValues   = 1_000
	DefaultDocuments        = 100_000
	DefaultPublishers       = 4
	DefaultBatch            = 256
	DefaultMaxInFlight      = 10_000
	DefaultBaselineDuration = 2 * time.Second
	DefaultDrainTimeout     = time.Minute
)

// DefaultMix is the subscription mix of a run: 90 % equality filters, 9 %
// document ids, 1 % CEL expressions.
var DefaultMix = Mix{Equality: 90, DocumentID: 9, CEL: 1}

// SyntrixMix is the default mix of the Syntrix scenario (Config.Syntrix),
// whose filters have no CEL: 90 % equality filters, 10 % document ids.
var SyntrixMix = Mix{Equality: 90, DocumentID: 10}

// Mix is the share of each kind of subscription, in percent; the three sum
// to 100.
type Mix struct {
	// Equality subscriptions are one filter `user == "u<k>"`, k drawn
	// uniformly among Config.DistinctValues values.
	Equality float64 `json:"eq"`
	// DocumentID subscriptions select one of Config.Documents document ids.
	DocumentID float64 `json:"doc"`
	// CEL subscriptions are expressions: two thirds indexable
	// (`doc.user == "u<k>" && doc.score >= T`), one third evaluated for
	// every event of their collection (`doc.score > T && id.endsWith("D")`).
	CEL float64 `json:"cel"`
}

// String returns the mix in the form ParseMix reads.
func (m Mix) String() string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	return "eq=" + f(m.Equality) + ",doc=" + f(m.DocumentID) + ",cel=" + f(m.CEL)
}

// ParseMix reads "eq=90,doc=9,cel=1" (any order; a kind left out is 0).
// The shares must be non-negative and sum to 100.
func ParseMix(s string) (Mix, error) {
	var m Mix
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return Mix{}, fmt.Errorf("bench: mix %q: want kind=percent, e.g. eq=90,doc=9,cel=1", s)
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return Mix{}, fmt.Errorf("bench: mix %q: %q is not a non-negative number", s, v)
		}
		switch k {
		case "eq":
			m.Equality = f
		case "doc":
			m.DocumentID = f
		case "cel":
			m.CEL = f
		default:
			return Mix{}, fmt.Errorf("bench: mix %q: unknown kind %q (want eq, doc or cel)", s, k)
		}
	}
	if err := m.validate(); err != nil {
		return Mix{}, err
	}
	return m, nil
}

func (m Mix) validate() error {
	if m.Equality < 0 || m.DocumentID < 0 || m.CEL < 0 {
		return fmt.Errorf("bench: mix %v: shares must not be negative", m)
	}
	if sum := m.Equality + m.DocumentID + m.CEL; sum < 99.999 || sum > 100.001 {
		return fmt.Errorf("bench: mix %v: shares sum to %g, want 100", m, sum)
	}
	return nil
}

// ParseRate reads a publish rate: a positive number of events per second,
// or "max" (returned as 0) to publish as fast as the system absorbs.
func ParseRate(s string) (float64, error) {
	if strings.EqualFold(s, "max") {
		return 0, nil
	}
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || r <= 0 {
		return 0, fmt.Errorf("bench: rate %q: want a positive number of events per second, or max", s)
	}
	return r, nil
}

// Config describes one run. Zero fields take the defaults above.
type Config struct {
	// RedisURL selects the Redis backend (store/redis URL forms); empty runs
	// the embedded in-memory backend, which supports one node only. When the
	// URL sets no pool_size, one large enough for the nodes' blocking reads
	// is added.
	RedisURL string
	// WaitReplicas is the nodes' redis.Config.WaitReplicas: writes that
	// acknowledge data wait for that many replicas (WAIT).
	WaitReplicas int
	// RedisMasters and RedisReplicas are the process ids of the Redis
	// servers (masters, replicas) when the bench started them
	// (StartRedisCluster): the result reports their CPU.
	RedisMasters, RedisReplicas []int
	// Abuse, when set, runs a noisy neighbour of that kind (AbuseKinds) in a
	// tenant of its own next to the workload during the run; the workload's
	// figures then show what it costs the well-behaved tenants.
	Abuse string
	// Syntrix runs the gateways as Syntrix's gateways: clients of the
	// nodes' syntrix.streamer.v1 service instead of the client library
	// (the compat-subscriber scenario). Its filters have no CEL: the mix
	// must have none.
	Syntrix bool
	// Scale runs the scale scenario (scale.go): one node, grown to four and
	// shrunk back to one during the measured phase. Needs RedisURL.
	Scale bool
	// Nodes is the number of streamer nodes started in this process, all on
	// the same backend (default 1; more than one needs RedisURL).
	Nodes int
	// Gateways is the number of gateways, each a client.Conn over loopback
	// gRPC, spread round-robin over the nodes (default 4).
	Gateways int
	// SubsPerGateway is the number of subscriptions of each gateway drawn
	// from Mix (default 10,000). Each gateway also holds one marker
	// subscription per collection, not counted here.
	SubsPerGateway int
	// Rate is the publish rate in events per second; 0 publishes as fast as
	// the system absorbs with at most MaxInFlight events unseen by any
	// gateway ("max", a saturation run).
	Rate float64
	// Duration of the measured phase (default 10s).
	Duration time.Duration
	// Warmup is a phase at the same rate before the measured one, verified
	// for completeness but left out of latency and throughput (default 1s;
	// negative = none).
	Warmup time.Duration
	// Partitions of the event log (default store.DefaultPartitions).
	Partitions int
	// Collections events and subscriptions are spread over (default 16).
	Collections int
	// DistinctValues is the number of values of the field equality filters
	// test (default 1,000): the fewer, the more subscriptions match each
	// event.
	DistinctValues int
	// Documents is the number of distinct document ids per collection
	// (default 100,000).
	Documents int
	// Mix of subscription kinds (default DefaultMix).
	Mix Mix
	// Publishers is the number of concurrent Publish calls (default 4).
	Publishers int
	// Batch is the most events per Publish call (default 256).
	Batch int
	// MaxInFlight bounds, when Rate is 0, how far publishing runs ahead of
	// what gateways have received, in events (default 10,000).
	MaxInFlight int
	// BaselineDuration is how long each baseline runs (default 2s; negative
	// = no baselines).
	BaselineDuration time.Duration
	// DrainTimeout bounds the wait for the last events after publishing
	// stops (default 1 min); what has not arrived by then counts as lost.
	DrainTimeout time.Duration
	// Seed makes the workload reproducible (default 1).
	Seed uint64

	// Progress receives a line per second and phase messages; nil = none.
	Progress io.Writer
	// Logger receives the nodes' and clients' logs (default: discarded).
	Logger *slog.Logger
	// CPUProfile, when set, receives a pprof CPU profile of the measured
	// phase (publishing and drain).
	CPUProfile io.Writer
	// MemProfile, when set, receives the pprof "allocs" profile (every
	// allocation since the process started, sampled) taken right after the
	// measured phase.
	MemProfile io.Writer
	// Trace, when set, receives a runtime execution trace of the measured
	// phase (go tool trace), which shows what every goroutine waited on:
	// the scheduler, the GC, the network.
	Trace io.Writer
}

// ErrMemoryOneNode is returned by Run for Nodes > 1 without RedisURL.
var ErrMemoryOneNode = errors.New("bench: the embedded in-memory backend serves exactly one node; use a Redis URL to run several nodes")

func (c Config) withDefaults() Config {
	pos := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	pos(&c.Nodes, DefaultNodes)
	pos(&c.Gateways, DefaultGateways)
	pos(&c.SubsPerGateway, DefaultSubsPerGateway)
	pos(&c.Partitions, store.DefaultPartitions)
	pos(&c.Collections, DefaultCollections)
	pos(&c.DistinctValues, DefaultDistinctValues)
	pos(&c.Documents, DefaultDocuments)
	pos(&c.Publishers, DefaultPublishers)
	pos(&c.Batch, DefaultBatch)
	pos(&c.MaxInFlight, DefaultMaxInFlight)
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.Warmup == 0 {
		c.Warmup = DefaultWarmup
	}
	if c.BaselineDuration == 0 {
		c.BaselineDuration = DefaultBaselineDuration
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Mix == (Mix{}) && c.Syntrix {
		c.Mix = SyntrixMix
	} else if c.Mix == (Mix{}) {
		c.Mix = DefaultMix
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

func (c Config) validate() error {
	if c.Abuse != "" && !slices.Contains(AbuseKinds, c.Abuse) {
		return fmt.Errorf("bench: unknown abuse %q (want one of %s)", c.Abuse, strings.Join(AbuseKinds, ", "))
	}
	if c.Syntrix && c.Mix.CEL > 0 {
		return errors.New("bench: --syntrix: Syntrix's filters have no CEL; give a mix without it (e.g. --mix eq=90,doc=10)")
	}
	if c.Scale && (c.RedisURL == "" || c.Nodes != 1) {
		return errors.New("bench: the scale scenario needs --redis, and starts from one node (leave --nodes out)")
	}
	if c.Nodes > 1 && c.RedisURL == "" {
		return fmt.Errorf("%w (got %d nodes)", ErrMemoryOneNode, c.Nodes)
	}
	if c.Rate < 0 {
		return fmt.Errorf("bench: negative rate %g", c.Rate)
	}
	if uint64(c.Gateways)*uint64(c.SubsPerGateway) >= 1<<32 {
		return errors.New("bench: gateways × subscriptions must stay below 2^32")
	}
	return c.Mix.validate()
}

// redisURLWithPool returns url with a pool_size that covers the blocking
// reads of a node (one per owned partition, one per gateway session) and
// its concurrent calls, unless the URL sets one.
func redisURLWithPool(url string, partitions, gateways int) string {
	if strings.Contains(url, "pool_size=") {
		return url
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "pool_size=" + strconv.Itoa(partitions+2*gateways+32)
}
