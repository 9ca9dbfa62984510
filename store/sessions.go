package store

import "context"

// Sessions records which node holds each gateway's live session, with an
// epoch that orders successive sessions (Redis: stm:{gw:G}:session holding
// node and epoch, updated by scripts so that the epoch survives Release).
//
// A gateway has at most one live session: a newer Claim supersedes the
// older one, whose node notices through Current and closes it. Empty gateway
// or node names are an error wrapping ErrInvalid.
//
// Every method returns ctx.Err() (possibly wrapped) when ctx is done before
// it completes, and an error wrapping ErrClosed after Backend.Close.
type Sessions interface {
	// Claim records node as the holder of gateway's session, replacing any
	// holder, with a new epoch strictly greater than every epoch Claim
	// returned before for that gateway (also across Release), and returns
	// it. Epochs are positive but need not be consecutive.
	Claim(ctx context.Context, gateway, node string) (epoch int64, err error)

	// Current returns the holder of gateway's session and its epoch, or
	// ("", 0) when there is none.
	Current(ctx context.Context, gateway string) (node string, epoch int64, err error)

	// Release clears the record if it still holds exactly (node, epoch);
	// otherwise (superseded or already released) it is a no-op.
	Release(ctx context.Context, gateway, node string, epoch int64) error
}
