package service

import (
	"context"
	"crypto/subtle"
	"strings"
	"time"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcServerOptions returns the options the node's gRPC server is built
// with (NewGRPCServer): the codec that forwards outbox entries without
// re-encoding them, bearer-token authentication interceptors (when
// Config.AuthToken is set), message size limits large enough for MaxDocumentBytes, and
// keepalive pings that detect a gateway connection gone silent (half-open,
// or a network partition) within two thirds of GatewayTTL (at least 2s), so
// that its session, blocked sending to it, ends and releases its record.
func (n *Node) grpcServerOptions() []grpc.ServerOption {
	opts := n.baseServerOptions()
	if n.cfg.AuthToken != "" {
		// Syntrix's gateways send no token: its service, when on this
		// server, is protected by the listener (mTLS, the network).
		syntrix := func(method string) bool { return strings.HasPrefix(method, "/syntrix.streamer.v1.") }
		opts = append(opts,
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				if err := n.authenticate(ctx); err != nil {
					return nil, err
				}
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				if !syntrix(info.FullMethod) {
					if err := n.authenticate(ss.Context()); err != nil {
						return err
					}
				}
				return h(srv, ss)
			}),
		)
	}
	return opts
}

// baseServerOptions are the node's gRPC server options but authentication.
func (n *Node) baseServerOptions() []grpc.ServerOption {
	ping := max(n.cfg.GatewayTTL/3, time.Second)
	return []grpc.ServerOption{
		// Deliveries are forwarded as the outbox's bytes (rawcodec.go).
		grpc.ForceServerCodecV2(rawCodec{proto: encoding.GetCodecV2(grpcproto.Name)}),
		// A published event carries a document and a pre-image, each up to
		// MaxDocumentBytes; larger messages are refused by gRPC itself.
		grpc.MaxRecvMsgSize(max(4<<20, 2*n.cfg.MaxDocumentBytes+1<<20)),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: ping, Timeout: ping}),
	}
}

// authenticate checks the call's "authorization: Bearer <token>" metadata
// against Config.AuthToken in constant time.
func (n *Node) authenticate(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		return status.Error(codes.Unauthenticated, `streamer: missing bearer token: send gRPC metadata "authorization: Bearer <token>"`)
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return status.Error(codes.Unauthenticated, `streamer: malformed authorization metadata: want "Bearer <token>"`)
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(token)), []byte(n.cfg.AuthToken)) != 1 {
		return status.Error(codes.Unauthenticated, "streamer: wrong bearer token")
	}
	return nil
}
