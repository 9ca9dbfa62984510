// Package match decides which subscriptions an event concerns.
//
// It owns the filter model (a [Criterion]: one document id, a list of Firestore-style
// field filters, a CEL expression, or everything), its validation and compilation
// ([Engine], with a size-bounded cache of compiled CEL programs), the subscription
// [Index] that keeps matching cost independent of the number of subscriptions, and the
// soft-delete transform applied to events before matching ([SoftDelete]).
//
// Documents are JSON objects decoded once per event with [ParseDocument]: numbers are
// float64, as in google.protobuf.Value and CEL's JSON mapping, except integers that a
// float64 would round (beyond 2^53), which stay exact as int64: field filters compare
// them exactly (9007199254740993 is not 9007199254740992), CEL by its own rules (an int
// with a double, as doubles). Field filters follow Firestore's where() semantics exactly
// and are evaluated natively, without allocating.
//
// The package knows nothing about transports, storage or gateways' connections; it is
// safe for concurrent use where documented.
package match
