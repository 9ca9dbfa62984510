package client

import (
	"errors"
	"strings"
	"testing"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
)

// TestSessionErrorsDecideReconnect: a node's session-level Error maps to a
// sentinel or a *NodeError, and only the ones that a new session cannot fix
// end the Conn.
func TestSessionErrorsDecideReconnect(t *testing.T) {
	for _, tc := range []struct {
		name      string
		code      streamerv1.ErrorCode
		sentinel  error // nil: a *NodeError
		permanent bool
	}{
		{"unauthenticated ends the Conn", streamerv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, ErrUnauthenticated, true},
		{"superseded ends the Conn", streamerv1.ErrorCode_ERROR_CODE_SUPERSEDED, ErrSuperseded, true},
		{"invalid argument ends the Conn", streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, nil, true},
		{"not registered ends the Conn", streamerv1.ErrorCode_ERROR_CODE_NOT_REGISTERED, nil, true},
		{"a node shutting down is retried", streamerv1.ErrorCode_ERROR_CODE_UNAVAILABLE, nil, false},
		{"an internal error is retried", streamerv1.ErrorCode_ERROR_CODE_INTERNAL, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := fromNodeError(&streamerv1.Error{Code: tc.code, Message: "because"})
			if !strings.Contains(err.Error(), "because") {
				t.Errorf("error %q lacks the node's message", err)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error %v, want %v", err, tc.sentinel)
			}
			var ne *NodeError
			if tc.sentinel == nil && (!errors.As(err, &ne) || ne.Code != tc.code) {
				t.Errorf("error %v, want a *NodeError with code %v", err, tc.code)
			}
			if got := permanent(err); got != tc.permanent {
				t.Errorf("permanent(%v) = %v, want %v", err, got, tc.permanent)
			}
		})
	}
}
