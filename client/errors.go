package client

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

var (
	// ErrClosed is returned by calls on a Conn or Publisher after Close, and
	// by Conn.Err once Close was called (unless the Conn had already failed).
	ErrClosed = errors.New("client: connection closed")
	// ErrUnauthenticated means the node refused the bearer token (missing or
	// wrong). It is permanent: a Conn that gets it stops reconnecting.
	ErrUnauthenticated = errors.New("client: unauthenticated: the node refused the bearer token")
	// ErrSuperseded means a newer session with the same gateway id took over:
	// two processes share a gateway id. It is permanent, since reconnecting
	// would only take the session back from the other one.
	ErrSuperseded = errors.New("client: session superseded by a newer session with the same gateway id")
	// ErrPermissionDenied means the node refused the call for this
	// identity. It is permanent.
	ErrPermissionDenied = errors.New("client: permission denied")
	// ErrUnsupported means the server does not implement the service called
	// (not a streamer node, or an incompatible version). It is permanent.
	ErrUnsupported = errors.New("client: the server does not implement the streamer protocol")
	// ErrProtocol means the node broke the wire protocol (an unexpected or
	// out-of-order message). The Conn reconnects.
	ErrProtocol = errors.New("client: protocol violation by the node")
	// ErrNoHeartbeat means the node stayed silent for two heartbeat
	// intervals (at most half its TTL; see WithHeartbeatInterval), or did
	// not answer Register in time, so the connection is considered dead.
	// The Conn reconnects over a new connection.
	ErrNoHeartbeat = errors.New("client: node silent for two heartbeat intervals")
	// ErrNotConnected is Conn.Ready's answer while the Conn has no
	// registered session and is reconnecting.
	ErrNotConnected = errors.New("client: not connected to a node (reconnecting)")
)

// SubscribeError is a refusal of a Subscribe or Unsubscribe by the node (or,
// for input the client can check itself, by the client before sending).
// Match it with errors.As; Code is the machine-readable reason.
type SubscribeError struct {
	// SubscriptionID is the id of the refused subscription.
	SubscriptionID string
	// Code is the reason, e.g. ERROR_CODE_INVALID_FILTER or
	// ERROR_CODE_UNKNOWN_SUBSCRIPTION.
	Code streamerv1.ErrorCode
	// Message explains the refusal to humans; it may change between
	// releases and must not be matched.
	Message string
}

func (e *SubscribeError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("client: subscription %q refused: %s", e.SubscriptionID, e.Code)
	}
	return fmt.Sprintf("client: subscription %q refused: %s: %s", e.SubscriptionID, e.Code, e.Message)
}

// NodeError is a session-level Error the node sent before closing the stream
// (superseded by a newer session, shutting down, not registered, …). Codes
// ERROR_CODE_INVALID_ARGUMENT and ERROR_CODE_NOT_REGISTERED are permanent
// (retrying cannot help); the others make the Conn reconnect.
// ERROR_CODE_UNAUTHENTICATED is reported as ErrUnauthenticated instead.
type NodeError struct {
	// Code is the reason.
	Code streamerv1.ErrorCode
	// Message explains it to humans; never match it.
	Message string
}

func (e *NodeError) Error() string {
	return fmt.Sprintf("client: node closed the session: %s: %s", e.Code, e.Message)
}

// fromStatus maps a gRPC error to this package's sentinels by status code
// (never by message); other errors are returned unchanged.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() == codes.OK {
		return err
	}
	switch st.Code() {
	case codes.Unauthenticated:
		return fmt.Errorf("%w (%s)", ErrUnauthenticated, st.Message())
	case codes.PermissionDenied:
		return fmt.Errorf("%w (%s)", ErrPermissionDenied, st.Message())
	case codes.Unimplemented:
		return fmt.Errorf("%w (%s)", ErrUnsupported, st.Message())
	}
	return err
}

// fromNodeError maps a session-level Error message to an error.
func fromNodeError(e *streamerv1.Error) error {
	switch e.GetCode() {
	case streamerv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED:
		return fmt.Errorf("%w (%s)", ErrUnauthenticated, e.GetMessage())
	case streamerv1.ErrorCode_ERROR_CODE_SUPERSEDED:
		return fmt.Errorf("%w (%s)", ErrSuperseded, e.GetMessage())
	}
	return &NodeError{Code: e.GetCode(), Message: e.GetMessage()}
}

// permanent reports whether err ends a Conn instead of causing a reconnect.
func permanent(err error) bool {
	if errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrPermissionDenied) || errors.Is(err, ErrUnsupported) ||
		errors.Is(err, ErrSuperseded) {
		return true
	}
	var ne *NodeError
	if errors.As(err, &ne) {
		switch ne.Code {
		case streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, streamerv1.ErrorCode_ERROR_CODE_NOT_REGISTERED:
			return true
		}
	}
	return false
}

// transientCode reports whether a SubscribeResult error code says "try again
// later" rather than "this subscription is invalid".
func transientCode(c streamerv1.ErrorCode) bool {
	switch c {
	case streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, streamerv1.ErrorCode_ERROR_CODE_INTERNAL,
		streamerv1.ErrorCode_ERROR_CODE_UNSPECIFIED:
		return true
	}
	return false
}
