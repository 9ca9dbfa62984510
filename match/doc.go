// Package match decides which subscriptions an event concerns.
//
// It owns the filter model (a [Criterion]: one document id, a list of Firestore-style
// field filters, a CEL expression, or everything), its validation and compilation
// ([Engine], with a size-bounded cache of compiled CEL programs), the subscription
// [Index] that keeps matching cost independent of the number of subscriptions, and the
// soft-delete transform applied to events before matching ([SoftDelete]).
//
// Documents are JSON objects decoded once per event with [ParseDocument]: numbers are
// float64, as in google.protobuf.Value and CEL's JSON mapping. Field filters follow
// Firestore's where() semantics exactly and are evaluated natively, without allocating.
//
// The package knows nothing about transports, storage or gateways' connections; it is
// safe for concurrent use where documented.
package match
