package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// Publisher appends change events to the event log through the Ingest
// service. Of the options, WithToken, WithTransportCredentials and
// WithDialer apply; the others are ignored. It is safe for concurrent use.
type Publisher struct {
	cc  *grpc.ClientConn
	api streamerv1.IngestClient
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
	return &Publisher{cc: cc, api: streamerv1.NewIngestClient(cc)}, nil
}

// Publish appends events in one Ingest.Publish call and returns one result
// per event, in order; a result with Error set is a rejected event (the
// others are appended regardless). The error is for the call as a whole:
// ErrUnauthenticated and the other sentinels by gRPC status code, or the
// transport's error. It does not retry.
func (p *Publisher) Publish(ctx context.Context, events []*streamerv1.ChangeEvent) ([]*streamerv1.PublishResult, error) {
	resp, err := p.api.Publish(ctx, &streamerv1.PublishRequest{Events: events})
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
