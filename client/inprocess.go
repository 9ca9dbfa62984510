package client

import (
	"context"
	"net"

	"google.golang.org/grpc/test/bufconn"
)

// InProcessAddr is a conventional address for Dial and NewPublisher with
// InProcess.Option; the in-process dialer ignores the address.
const InProcessAddr = "inprocess"

// inProcessBuffer is the size of each direction's in-memory pipe buffer.
const inProcessBuffer = 1 << 20

// InProcess is an in-memory transport for a program that embeds a node and
// its clients: the node's grpc.Server serves Listener, and Dial or
// NewPublisher with Option connect to it without a network hop (gRPC over
// google.golang.org/grpc/test/bufconn pipes, so the protocol, flow control
// and backpressure are the same as over TCP). Use it only within one
// process:
//
//	p := client.NewInProcess()
//	srv := node.NewGRPCServer()
//	go srv.Serve(p.Listener())
//	conn, err := client.Dial(ctx, client.InProcessAddr, p.Option())
type InProcess struct {
	lis *bufconn.Listener
}

// NewInProcess returns a new in-memory transport.
func NewInProcess() *InProcess {
	return &InProcess{lis: bufconn.Listen(inProcessBuffer)}
}

// Listener is the listener to hand to grpc.Server.Serve. Stopping the
// server closes it.
func (p *InProcess) Listener() net.Listener { return p.lis }

// Option makes Dial or NewPublisher connect through this transport (with
// plaintext credentials unless WithTransportCredentials is also given).
func (p *InProcess) Option() Option {
	return WithDialer(func(ctx context.Context, _ string) (net.Conn, error) {
		return p.lis.DialContext(ctx)
	})
}

// Close closes the listener; later dials fail. Established connections are
// not affected.
func (p *InProcess) Close() error { return p.lis.Close() }
