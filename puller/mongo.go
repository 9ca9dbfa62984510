package puller

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/x/mongo/driver/connstring"
)

// ErrCursorClosed is the Err of a ChangeStream whose server cursor was closed
// without an error (the server ends a stream that way after an invalidate
// event, or when it kills the cursor). The Puller reopens the stream from its
// checkpoint.
var ErrCursorClosed = errors.New("puller: change stream cursor closed by the server")

// MongoWatcher is the Watcher of one MongoDB database over the official
// driver. It watches the whole database, or, when collections are listed,
// the database with a $match on ns.coll (so one stream serves every listed
// collection). Events that end the stream (invalidate, dropDatabase) always
// pass the $match, and so does a rename of another collection to a listed one.
type MongoWatcher struct {
	db          *mongo.Database
	collections []string
}

var _ Watcher = (*MongoWatcher)(nil)

// NewMongoWatcher returns a Watcher of database db through client. An empty
// collections list watches every collection of the database. The client is
// the caller's: the watcher never disconnects it.
func NewMongoWatcher(client *mongo.Client, db string, collections []string) *MongoWatcher {
	return &MongoWatcher{db: client.Database(db), collections: append([]string(nil), collections...)}
}

// ConnectMongo creates a driver client for uri and returns it with a
// Watcher of database db (the database named in uri when db is empty) and
// collections. The driver connects lazily: an unreachable server shows up
// as change stream errors, which the Puller retries. The caller disconnects
// the client once the Puller's Run has returned.
func ConnectMongo(ctx context.Context, uri, db string, collections []string) (*MongoWatcher, *mongo.Client, error) {
	cs, err := connstring.ParseAndValidate(uri)
	if err != nil {
		return nil, nil, fmt.Errorf("puller: MongoDB URI: %w", err)
	}
	if db == "" {
		db = cs.Database
	}
	if db == "" {
		return nil, nil, errors.New("puller: no database to watch: the MongoDB URI names none (mongodb://host/DB) and none was given (--db)")
	}
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(uri))
	if err != nil {
		return nil, nil, fmt.Errorf("puller: connecting to MongoDB: %w", err)
	}
	return NewMongoWatcher(client, db, collections), client, nil
}

// Database returns the name of the watched database.
func (w *MongoWatcher) Database() string { return w.db.Name() }

// Pipeline returns the aggregation stages that follow $changeStream: empty
// when every collection is watched.
func (w *MongoWatcher) Pipeline() mongo.Pipeline {
	if len(w.collections) == 0 {
		return mongo.Pipeline{}
	}
	return mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "ns.coll", Value: bson.D{{Key: "$in", Value: w.collections}}}},
		bson.D{{Key: "to.coll", Value: bson.D{{Key: "$in", Value: w.collections}}}},
		bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"invalidate", "dropDatabase"}}}}},
	}}}}}}
}

// Watch implements Watcher: db.watch(pipeline) with fullDocument:
// updateLookup, and fullDocumentBeforeChange: whenAvailable when
// opts.PreImages is set.
func (w *MongoWatcher) Watch(ctx context.Context, opts WatchOptions) (ChangeStream, error) {
	o := options.ChangeStream().SetFullDocument(options.UpdateLookup)
	if opts.PreImages {
		o.SetFullDocumentBeforeChange(options.WhenAvailable)
	}
	switch {
	case len(opts.ResumeAfter) > 0 && len(opts.StartAfter) > 0:
		return nil, errors.New("puller: watch: ResumeAfter and StartAfter are exclusive")
	case len(opts.ResumeAfter) > 0:
		o.SetResumeAfter(opts.ResumeAfter)
	case len(opts.StartAfter) > 0:
		o.SetStartAfter(opts.StartAfter)
	}
	if opts.MaxAwait > 0 {
		o.SetMaxAwaitTime(opts.MaxAwait)
	}
	if opts.BatchSize > 0 {
		o.SetBatchSize(opts.BatchSize)
	}
	cs, err := w.db.Watch(ctx, w.Pipeline(), o)
	if err != nil {
		return nil, fmt.Errorf("puller: watching database %q: %w", w.db.Name(), err)
	}
	return &mongoStream{cs: cs}, nil
}

// mongoStream adapts *mongo.ChangeStream to ChangeStream.
type mongoStream struct {
	cs     *mongo.ChangeStream
	closed bool // the server closed the cursor (cursor id 0) without an error
}

func (s *mongoStream) TryNext(ctx context.Context) bool {
	if s.cs.TryNext(ctx) {
		return true
	}
	if s.cs.Err() == nil && s.cs.ID() == 0 {
		s.closed = true
	}
	return false
}

func (s *mongoStream) Current() bson.Raw               { return s.cs.Current }
func (s *mongoStream) RemainingBatchLength() int       { return s.cs.RemainingBatchLength() }
func (s *mongoStream) ResumeToken() bson.Raw           { return s.cs.ResumeToken() }
func (s *mongoStream) Close(ctx context.Context) error { return s.cs.Close(ctx) }

func (s *mongoStream) Err() error {
	if err := s.cs.Err(); err != nil {
		return err
	}
	if s.closed {
		return ErrCursorClosed
	}
	return nil
}
