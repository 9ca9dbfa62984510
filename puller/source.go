package puller

import (
	"context"
	"time"

	"go.mongodb.org/mongo-driver/bson"
)

// Watcher opens change streams. It is the seam between the Puller and the
// MongoDB driver: NewMongoWatcher is the real implementation, tests may use
// others. A Watcher is used by one goroutine at a time.
type Watcher interface {
	// Watch opens a change stream as opts say. An error here is the server's
	// answer to the opening aggregate (for instance ChangeStreamHistoryLost
	// when the resume token is gone) or a connection failure.
	Watch(ctx context.Context, opts WatchOptions) (ChangeStream, error)
}

// WatchOptions says where a change stream starts and what it carries.
type WatchOptions struct {
	// ResumeAfter, when not empty, is a resume token (the _id of a change
	// event, or a postBatchResumeToken): the stream starts right after it.
	ResumeAfter bson.Raw
	// StartAfter is like ResumeAfter but also accepts the token of an
	// invalidate event. At most one of ResumeAfter and StartAfter is set;
	// with neither the stream starts at the current time.
	StartAfter bson.Raw
	// PreImages asks for fullDocumentBeforeChange: whenAvailable (the
	// collections must have changeStreamPreAndPostImages enabled).
	PreImages bool
	// MaxAwait bounds how long the server holds a getMore open waiting for
	// changes; zero leaves the server's default (1s).
	MaxAwait time.Duration
	// BatchSize caps the documents per server batch; zero leaves the
	// server's default.
	BatchSize int32
}

// ChangeStream is an open change stream. Its methods are called by one
// goroutine at a time.
type ChangeStream interface {
	// TryNext advances to the next change event and reports whether there
	// is one. It returns events already fetched without I/O; when the
	// current batch is used up it does one server round trip (a getMore,
	// which the server may hold up to MaxAwait) and returns false if that
	// brought nothing. After false, Err says whether the stream failed (or
	// was closed by the server); if Err is nil it may be called again.
	TryNext(ctx context.Context) bool
	// Current is the raw change event TryNext advanced to. It is valid until
	// the next TryNext.
	Current() bson.Raw
	// RemainingBatchLength is the number of fetched events not returned yet;
	// zero means the next TryNext goes to the server.
	RemainingBatchLength() int
	// ResumeToken is the token to resume after everything returned so far:
	// the _id of the last event, or the server's postBatchResumeToken once
	// a batch is used up. It is nil before the first one is known.
	ResumeToken() bson.Raw
	// Err is the error that ended the stream, or nil. It is
	// ErrCursorClosed when the server closed the cursor without an error.
	Err() error
	// Close releases the stream's server cursor. It may be called more than
	// once.
	Close(ctx context.Context) error
}
