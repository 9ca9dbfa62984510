package puller

import (
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/mongo"
)

var (
	// ErrStreamEnded is matched (errors.Is) by every *EndError.
	ErrStreamEnded = errors.New("puller: the change stream was ended by the source")
	// ErrHistoryLost is matched (errors.Is) by every *HistoryLostError.
	ErrHistoryLost = errors.New("puller: the saved resume token cannot be used")
	// ErrSkipped is matched (errors.Is) by every *SkipError.
	ErrSkipped = errors.New("puller: change event skipped")
)

// EndError reports a change event after which the stream cannot simply go
// on: invalidate, drop, dropDatabase or rename. The Puller appends every event
// before it, saves the event's own token as the checkpoint, logs the error and
// returns it from Run. What a restart does depends on the operation, and the
// message says it: after drop and rename the stream resumes after the event;
// after dropDatabase the next event is an invalidate; after invalidate the
// token cannot be resumed, so the restart needs StartFromNow.
type EndError struct {
	// Operation is the change event's operationType.
	Operation string
	// Namespace is "db.collection" (drop, rename), "db" (dropDatabase) or
	// empty (invalidate).
	Namespace string
	// To is the new "db.collection" of a rename; empty otherwise.
	To string
	// EventID is the event's resume token _data.
	EventID string
	// ClusterTime is the event's commit time; zero if unknown.
	ClusterTime time.Time
}

func (e *EndError) Error() string {
	at := ""
	if !e.ClusterTime.IsZero() {
		at = " at " + e.ClusterTime.UTC().Format(time.RFC3339)
	}
	switch e.Operation {
	case "drop":
		return fmt.Sprintf("puller: collection %s was dropped%s (event %s): its documents were removed without per-document delete events, "+
			"so subscribers may still hold them; resync the subscribers of that collection, then restart the puller: it resumes after the drop", e.Namespace, at, e.EventID)
	case "rename":
		return fmt.Sprintf("puller: collection %s was renamed to %s%s (event %s): its documents now belong to another collection without per-document events, "+
			"so subscribers of either name may hold stale documents; resync them (and check --collections), then restart the puller: it resumes after the rename", e.Namespace, e.To, at, e.EventID)
	case "dropDatabase":
		return fmt.Sprintf("puller: database %s was dropped%s (event %s): every document was removed without per-document delete events and the change stream is invalidated next; "+
			"resync the subscribers, then restart the puller with --start-from-now (StartFromNow) once the database is in use again", e.Namespace, at, e.EventID)
	default: // invalidate
		return fmt.Sprintf("puller: the change stream was invalidated%s (event %s): the watched database was dropped or renamed, and a stream cannot resume past an invalidate; "+
			"resync the subscribers, then restart the puller with --start-from-now (StartFromNow) once the database is in use again", at, e.EventID)
	}
}

// Is reports whether target is ErrStreamEnded.
func (e *EndError) Is(target error) bool { return target == ErrStreamEnded }

// HistoryLostError reports that the change stream could not resume from the
// saved token: the server no longer has the changes after it
// (ChangeStreamHistoryLost, code 286, or CappedPositionLost on older
// servers), or refuses the token (InvalidResumeToken, ChangeStreamFatalError).
// Resuming anyway would skip changes, so the Puller stops with this error
// unless Config.StartFromNow is set.
type HistoryLostError struct {
	// EventID is the _data of the saved token ("" if it has none).
	EventID string
	// Err is the server's error.
	Err error
}

func (e *HistoryLostError) Error() string {
	return fmt.Sprintf("puller: cannot resume the change stream after the saved token %q: %v; "+
		"the changes since then are no longer available (oplog rolled over) or the token is unusable, so resuming would skip changes. "+
		"Resync the subscribers (or accept the gap), then restart the puller with --start-from-now (StartFromNow) to start from the current time", e.EventID, e.Err)
}

// Unwrap returns the server's error.
func (e *HistoryLostError) Unwrap() error { return e.Err }

// Is reports whether target is ErrHistoryLost.
func (e *HistoryLostError) Is(target error) bool { return target == ErrHistoryLost }

// SkipError is returned by Mapper.Convert for a change event that carries no
// document change the event log can hold (a DDL event such as create or
// createIndexes, reported only with expanded events), whose document id
// cannot be found, or whose content is not valid BSON. The Puller logs it at warn level, counts it in
// streamer_puller_events_skipped_total and moves past it.
type SkipError struct {
	// Operation is the event's operationType.
	Operation string
	// EventID is the event's resume token _data.
	EventID string
	// Reason says why the event was skipped.
	Reason string
	// Err is the underlying error, such as one wrapping ErrMalformedBSON;
	// nil for events skipped by design.
	Err error
}

func (e *SkipError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("puller: skipping %s event %s: %s: %v", e.Operation, e.EventID, e.Reason, e.Err)
	}
	return fmt.Sprintf("puller: skipping %s event %s: %s", e.Operation, e.EventID, e.Reason)
}

// Unwrap returns Err.
func (e *SkipError) Unwrap() error { return e.Err }

// Is reports whether target is ErrSkipped.
func (e *SkipError) Is(target error) bool { return target == ErrSkipped }

// Server error codes the Puller classifies.
const (
	codeHistoryLost        = 286   // ChangeStreamHistoryLost
	codeFatalChangeStream  = 280   // ChangeStreamFatalError
	codeInvalidResumeToken = 260   // InvalidResumeToken
	codeCappedPositionLost = 136   // CappedPositionLost (servers before 4.2)
	codeUnauthorized       = 13    // Unauthorized
	codeAuthFailed         = 18    // AuthenticationFailed
	codeNotReplicaSet      = 40573 // "$changeStream stage is only supported on replica sets"
	codeUnknownStage       = 40324 // unrecognized pipeline stage (server too old)
	codeInvalidNamespace   = 73    // InvalidNamespace
)

// errClass is what the Puller does about a change stream error.
type errClass int

const (
	// transient: reopen the stream from the checkpoint after a backoff.
	transient errClass = iota
	// tokenUnusable: the resume token cannot be used (HistoryLostError).
	tokenUnusable
	// permanent: retrying cannot help (auth, not a replica set); stop.
	permanent
)

func classify(err error) errClass {
	var se mongo.ServerError
	if !errors.As(err, &se) || mongo.IsNetworkError(err) {
		return transient
	}
	switch {
	case se.HasErrorCode(codeHistoryLost), se.HasErrorCode(codeFatalChangeStream),
		se.HasErrorCode(codeInvalidResumeToken), se.HasErrorCode(codeCappedPositionLost):
		return tokenUnusable
	case se.HasErrorCode(codeUnauthorized), se.HasErrorCode(codeAuthFailed),
		se.HasErrorCode(codeNotReplicaSet), se.HasErrorCode(codeUnknownStage),
		se.HasErrorCode(codeInvalidNamespace):
		return permanent
	}
	return transient
}
