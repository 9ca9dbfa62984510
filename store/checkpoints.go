package store

import "context"

// Checkpoints holds small named values, such as the Puller's resume tokens
// (Redis: strings stm:puller:{name}:*). Values are opaque: nil and empty are
// stored alike and loaded as empty, and Load returns a copy. An empty name is
// an error wrapping ErrInvalid.
//
// Every method returns ctx.Err() (possibly wrapped) when ctx is done before
// it completes, and an error wrapping ErrClosed after Backend.Close.
type Checkpoints interface {
	// Save stores value under name, replacing any previous value.
	Save(ctx context.Context, name string, value []byte) error

	// Load returns the value saved under name; found is false (and value
	// nil) when nothing was saved.
	Load(ctx context.Context, name string) (value []byte, found bool, err error)
}
