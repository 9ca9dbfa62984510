package client

import (
	"context"
	"fmt"
	mrand "math/rand/v2"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/streamerd/streamer/internal/clock"
	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// Publisher appends change events to the event log through the Ingest
// service. Of the options, WithToken, WithTransportCredentials and
// WithDialer apply; the others are ignored. It is safe for concurrent use.
type Publisher struct {
	cc      *grpc.ClientConn
	api     streamerv1.IngestClient
	backoff backoff
	clock   clock.Clock
}

// NewPublisher returns a Publisher for the node(s) at addr. It connects
// lazily, on the first Publish.
func NewPublisher(addr string, opts ...Option) (*Publisher, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	cc, err := cfg.grpcConn(addr)
	if err != nil {
		return nil, err
	}
	return &Publisher{cc: cc, api: streamerv1.NewIngestClient(cc), backoff: cfg.backoff, clock: cfg.clock}, nil
}

// MaxPublishBytes bounds the encoded size of one Ingest.Publish call: the
// least a node accepts (4 MiB, gRPC's default; a node with a larger
// --max-document-bytes accepts more).
const MaxPublishBytes = 4 << 20

// publishOverhead is what a PublishRequest adds to each event's bytes
// (field tag and length), with room to spare.
const publishOverhead = 16

// Publish appends events and returns one result per event, in order; a
// result with Error set is a rejected event (the others are appended
// regardless). Events are sent in calls of at most MaxPublishBytes each,
// in order; an event too large for one call is sent alone, and if the node
// refuses it as too large, its result says so (ERROR_CODE_TOO_LARGE, with
// its id) and the other events are still published.
//
// Transient failures are retried with the Publisher's backoff (WithBackoff)
// until ctx ends: events the node could not append
// (ERROR_CODE_UNAVAILABLE: its backend refused or was unreachable, as
// during a Redis Cluster failover) and calls that fail with gRPC's
// UNAVAILABLE (no node answered). A retry sends the same events with the
// same ids: Publish gives an id ("pub-" and random hex) to every event
// without one before its first attempt, so that a retry of an event that
// was appended after all (its answer lost) is a duplicate the nodes and
// the client library drop. When ctx ends, the last result of each event is
// returned (or the call's error).
//
// The error is for the call as a whole: ErrUnauthenticated and the other
// sentinels by gRPC status code, or the transport's error. Events of the
// calls before the failing one were appended.
func (p *Publisher) Publish(ctx context.Context, events []*streamerv1.ChangeEvent) ([]*streamerv1.PublishResult, error) {
	for _, ev := range events {
		if ev.GetEventId() == "" {
			ev.EventId = randomID("pub-")
		}
	}
	results := make([]*streamerv1.PublishResult, 0, len(events))
	for start := 0; start < len(events); {
		end, size := start, 0
		for end < len(events) {
			n := proto.Size(events[end]) + publishOverhead
			if end > start && size+n > MaxPublishBytes {
				break
			}
			size += n
			end++
		}
		got, err := p.publishRetrying(ctx, events[start:end])
		if err != nil {
			return nil, err
		}
		results = append(results, got...)
		start = end
	}
	return results, nil
}

// publishRetrying publishes events, retrying the transient failures (see
// Publish) until ctx ends.
func (p *Publisher) publishRetrying(ctx context.Context, events []*streamerv1.ChangeEvent) ([]*streamerv1.PublishResult, error) {
	results := make([]*streamerv1.PublishResult, len(events))
	pending := make([]int, len(events)) // indexes of the events still to publish
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; ; attempt++ {
		batch := make([]*streamerv1.ChangeEvent, len(pending))
		for i, k := range pending {
			batch[i] = events[k]
		}
		got, err := p.publish(ctx, batch)
		transient := status.Code(err) == codes.Unavailable
		if err != nil && !transient {
			return nil, err
		}
		if err == nil {
			retry := pending[:0]
			for i, k := range pending {
				results[k] = got[i]
				if got[i].GetError().GetCode() == streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE {
					retry = append(retry, k)
				}
			}
			pending = retry
		}
		if len(pending) == 0 {
			return results, nil
		}
		if !clock.Sleep(ctx, p.clock, p.backoff.delay(attempt, mrand.Int64N)) {
			if err != nil {
				return nil, err
			}
			return results, nil // the last results of those still refused
		}
	}
}

// publish is one Ingest.Publish call.
func (p *Publisher) publish(ctx context.Context, events []*streamerv1.ChangeEvent) ([]*streamerv1.PublishResult, error) {
	resp, err := p.api.Publish(ctx, &streamerv1.PublishRequest{Events: events})
	if status.Code(err) == codes.ResourceExhausted && len(events) == 1 {
		ev := events[0]
		return []*streamerv1.PublishResult{{EventId: ev.GetEventId(), Error: &streamerv1.Error{
			Code:    streamerv1.ErrorCode_ERROR_CODE_TOO_LARGE,
			Message: fmt.Sprintf("client: event %q (%d bytes encoded) is larger than the node accepts: %s", ev.GetEventId(), proto.Size(ev), status.Convert(err).Message()),
		}}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: publish: %w", fromStatus(err))
	}
	if len(resp.GetResults()) != len(events) {
		return nil, fmt.Errorf("%w: %d publish results for %d events", ErrProtocol, len(resp.GetResults()), len(events))
	}
	return resp.GetResults(), nil
}

// Close closes the connection; Publish then fails.
func (p *Publisher) Close() error {
	if err := p.cc.Close(); err != nil {
		return fmt.Errorf("client: close: %w", err)
	}
	return nil
}
