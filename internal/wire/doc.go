// Package wire is the node's hand-written protobuf codec for its hot paths:
// reading event-log entries without decoding them into Go structs (Event),
// validating a Publish request's events in place, encoding outbox batches
// around the events' bytes as they were read, and framing an outbox entry
// as a Delivery without re-encoding it.
//
// Everything here follows protobuf's rules, so that any decoder reads what
// it writes exactly as it would read proto.Marshal's output, and it accepts
// exactly what proto.Unmarshal accepts (or says it declines, so that the
// caller falls back to the generated code). The field numbers it uses are
// declared once, in fields.go, and a test checks every one of them against
// the generated descriptors: a .proto change cannot silently desynchronise
// the codec. Code that is not on a hot path uses the generated code.
package wire
