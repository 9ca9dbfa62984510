// Package puller tails MongoDB change streams and appends the changes, as
// normalized ChangeEvents, to Streamer's event log (docs/ARCHITECTURE.md).
//
// A Puller watches one database, or a list of its collections, with
// fullDocument: updateLookup (and fullDocumentBeforeChange: whenAvailable when
// pre-images are enabled). Each insert, update, replace and delete becomes a
// CREATE, UPDATE, UPDATE or DELETE event; its tenant, collection and document
// id come from configurable fields (see Mapping), its documents are converted
// from BSON to JSON by the rules documented on AppendJSON. Events are appended
// in batches, each to the partition of its tenant's collection
// (store.PartitionOf), and the change stream's resume token is saved to
// store.Checkpoints only after every event up to it has been appended: a crash
// replays events, it never skips one.
//
// Several pullers of one name may run against one backend: a leader lease
// (store.Locks) lets exactly one read; a standby takes over, from the saved
// token, when the leader stops renewing.
//
// Events that break the stream are never skipped quietly: invalidate, drop,
// dropDatabase and rename stop the Puller with an *EndError, and a resume token
// the server no longer has stops it with a *HistoryLostError unless
// Config.StartFromNow allows starting from the current time.
//
// The package does not connect to MongoDB by itself: the caller builds a
// Watcher (NewMongoWatcher over a *mongo.Client, or any other implementation
// of the small Watcher/ChangeStream seam) and passes it in Config. It is not a
// general CDC tool either: DDL events other than the four above are skipped
// with a warning and a metric, and nothing but the event log is written.
package puller
