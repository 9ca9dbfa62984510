package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	streamerv1 "github.com/streamerd/streamer/proto/streamer/v1"
	syntrixv1 "github.com/streamerd/streamer/proto/syntrix/streamer/v1"
)

// This file serves Syntrix's streamer service (syntrix.streamer.v1,
// Config.Syntrix) as an adapter over the node's own sessions: each Syntrix
// stream is a gateway session of the node (a fresh gateway id), run by the
// same code as Streamer.Stream over a stream that translates messages both
// ways. Matching, outboxes, limits and delivery are the node's; only the
// messages differ. What Syntrix's contract cannot say is turned into the
// end of the stream, which its gateways answer by reconnecting and
// subscribing again: a Resync (events lost) ends it with DATA_LOSS, a
// subscription the node ended with FAILED_PRECONDITION.

// syntrixAckEvery is how many deliveries the adapter sends before it
// acknowledges them to the session (which trims the outbox), between its
// periodic heartbeats.
const syntrixAckEvery = 64

// syntrixGatewayPrefix starts the gateway ids of Syntrix streams.
const syntrixGatewayPrefix = "syntrix-"

type syntrixService struct {
	syntrixv1.UnimplementedStreamerServiceServer
	n *Node
}

// Stream serves one Syntrix gateway stream.
func (svc *syntrixService) Stream(up grpc.BidiStreamingServer[syntrixv1.GatewayMessage, syntrixv1.StreamerMessage]) error {
	n := svc.n
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	a := &syntrixStream{
		ServerStream: up, up: up, n: n, gw: syntrixGatewayPrefix + hex.EncodeToString(b[:]),
		in: make(chan syntrixItem, sessionBuffer), failed: make(chan error, 1), done: make(chan struct{}),
	}
	a.heard.Store(n.cfg.Clock.Now().UnixNano())
	n.metrics.syntrixStreams.Inc()
	// The reader cannot be waited for: the gateway's Recv returns only once
	// the stream ends, right after this handler returns; it exits then.
	go a.read()
	var wg sync.WaitGroup
	wg.Go(a.tick)
	err := (&streamerService{n: n}).Stream(a)
	close(a.done)
	wg.Wait()
	if a.registered.Load() {
		// The stream's subscriptions go now: the gateway subscribes again,
		// with the same ids, on its next stream.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(up.Context()), 10*time.Second)
		if unlock, lerr := n.lockGateway(ctx, a.gw); lerr == nil {
			if rerr := n.retireGateway(ctx, a.gw, nil, "Syntrix gateway stream ended: its subscriptions dropped", "streamer: the Syntrix stream ended"); rerr != nil {
				n.log.Warn("dropping a Syntrix stream's subscriptions (they expire with the gateway ttl)", "gateway", a.gw, "err", rerr)
			}
			unlock()
		}
		cancel()
	}
	if a.end != nil {
		if status.Code(a.end) == codes.DataLoss {
			n.metrics.syntrixDataLoss.Inc()
			n.log.Warn("Syntrix stream ended: events may have been lost; the gateway reconnects and subscribes again", "gateway", a.gw, "reason", a.end)
		}
		return a.end
	}
	return err
}

// syntrixItem is a message for the session, with what its heartbeat
// answer needs: fromGateway heartbeats are echoed with ts, the adapter's
// own are not.
type syntrixItem struct {
	msg         *streamerv1.GatewayMessage
	fromGateway bool
	ts          int64
}

// syntrixStream is the session's stream: Recv yields the node's messages
// translated from Syntrix's, and Send and SendMsg translate the node's to
// Syntrix's.
type syntrixStream struct {
	grpc.ServerStream // the Syntrix stream's: context, headers, trailers
	up                grpc.BidiStreamingServer[syntrixv1.GatewayMessage, syntrixv1.StreamerMessage]
	n                 *Node
	gw                string

	in     chan syntrixItem // from read and tick
	failed chan error       // read's end (io.EOF when the gateway closed)
	done   chan struct{}    // the session ended

	registered atomic.Bool   // Register was handed to the session
	heard      atomic.Int64  // when the gateway last sent a message (Clock, ns)
	cursor     atomic.Value  // the newest cursor sent (string)
	sendMu     sync.Mutex    // serializes up.Send (the session's owner, read's refusals)
	hbMu       sync.Mutex    // guards heartbeats
	heartbeats []syntrixItem // heartbeats handed to the session, answers pending
	sinceAck   int           // deliveries since the last acknowledgement (owner only)
	end        error         // why the adapter ended the session (owner only)
}

func (a *syntrixStream) sendUp(m *syntrixv1.StreamerMessage) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	return a.up.Send(m)
}

func (a *syntrixStream) lastCursor() string {
	c, _ := a.cursor.Load().(string)
	return c
}

// push hands m to Recv; false when the session ended first.
func (a *syntrixStream) push(it syntrixItem) bool {
	select {
	case a.in <- it:
		return true
	case <-a.done:
		return false
	}
}

// read translates the gateway's messages until its stream ends.
func (a *syntrixStream) read() {
	for {
		m, err := a.up.Recv()
		if err != nil {
			select {
			case a.failed <- err:
			case <-a.done:
			}
			return
		}
		a.heard.Store(a.n.cfg.Clock.Now().UnixNano())
		var it syntrixItem
		switch x := m.GetPayload().(type) {
		case *syntrixv1.GatewayMessage_Subscribe:
			sub, refusal := a.subscription(x.Subscribe)
			if refusal != "" {
				if err := a.sendUp(&syntrixv1.StreamerMessage{Payload: &syntrixv1.StreamerMessage_SubscribeResponse{SubscribeResponse: &syntrixv1.SubscribeResponse{
					SubscriptionId: x.Subscribe.GetSubscriptionId(), Error: refusal}}}); err != nil {
					return
				}
				continue
			}
			it.msg = &streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Subscribe{Subscribe: &streamerv1.Subscribe{Subscription: sub}}}
		case *syntrixv1.GatewayMessage_Unsubscribe:
			it.msg = &streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Unsubscribe{Unsubscribe: &streamerv1.Unsubscribe{
				SubscriptionId: x.Unsubscribe.GetSubscriptionId()}}}
		case *syntrixv1.GatewayMessage_Heartbeat:
			it = syntrixItem{msg: a.heartbeat(), fromGateway: true, ts: x.Heartbeat.GetTimestamp()}
		default:
			continue // empty: only keeps the stream alive
		}
		if !a.push(it) {
			return
		}
	}
}

// heartbeat is the session's heartbeat acknowledging what was sent.
func (a *syntrixStream) heartbeat() *streamerv1.GatewayMessage {
	return &streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Heartbeat{Heartbeat: &streamerv1.Heartbeat{AckCursor: a.lastCursor()}}}
}

// tick heartbeats the session on the gateway's behalf while the gateway's
// stream is alive (it heartbeats every 30 s, the session wants one within
// its TTL), and ends the stream once the gateway has been silent for
// StreamTTL.
func (a *syntrixStream) tick() {
	every := max(a.n.cfg.GatewayTTL/5, time.Millisecond)
	t := a.n.cfg.Clock.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C():
		case <-a.done:
			return
		}
		silent := a.n.cfg.Clock.Now().Sub(time.Unix(0, a.heard.Load()))
		if silent > a.n.cfg.Syntrix.StreamTTL {
			select {
			case a.failed <- status.Errorf(codes.Unavailable, "streamer: no message from the gateway for %v (the limit is %v): stream closed", silent.Round(time.Second), a.n.cfg.Syntrix.StreamTTL):
			case <-a.done:
			}
			return
		}
		select { // never blocks: a full queue is being acknowledged anyway
		case a.in <- syntrixItem{msg: a.heartbeat()}:
		default:
		}
	}
}

// Recv hands the session Register first, then the translated messages.
func (a *syntrixStream) Recv() (*streamerv1.GatewayMessage, error) {
	if !a.registered.Swap(true) {
		return &streamerv1.GatewayMessage{Msg: &streamerv1.GatewayMessage_Register{Register: &streamerv1.Register{GatewayId: a.gw}}}, nil
	}
	select {
	case it := <-a.in:
		if it.msg.GetHeartbeat() != nil {
			a.hbMu.Lock()
			a.heartbeats = append(a.heartbeats, it)
			a.hbMu.Unlock()
		}
		return it.msg, nil
	case err := <-a.failed:
		return nil, err
	case <-a.done:
		return nil, io.EOF
	}
}

// RecvMsg is not used by the session.
func (a *syntrixStream) RecvMsg(any) error {
	return status.Error(codes.Internal, "streamer: RecvMsg on the Syntrix adapter")
}

// Send translates the session's messages; those Syntrix's contract has no
// place for are dropped or end the stream.
func (a *syntrixStream) Send(m *streamerv1.StreamerMessage) error {
	switch x := m.GetMsg().(type) {
	case *streamerv1.StreamerMessage_SubscribeResult:
		r := x.SubscribeResult
		if r.GetUnsubscribed() {
			return nil // Syntrix's gateways expect no answer
		}
		res := &syntrixv1.SubscribeResponse{SubscriptionId: r.GetSubscriptionId(), Success: r.GetError() == nil}
		if e := r.GetError(); e != nil {
			res.Error = e.GetMessage()
		}
		return a.sendUp(&syntrixv1.StreamerMessage{Payload: &syntrixv1.StreamerMessage_SubscribeResponse{SubscribeResponse: res}})
	case *streamerv1.StreamerMessage_HeartbeatAck:
		a.hbMu.Lock()
		var hb syntrixItem
		if len(a.heartbeats) > 0 {
			hb = a.heartbeats[0]
			a.heartbeats = a.heartbeats[1:]
		}
		a.hbMu.Unlock()
		if !hb.fromGateway {
			return nil
		}
		return a.sendUp(&syntrixv1.StreamerMessage{Payload: &syntrixv1.StreamerMessage_HeartbeatAck{HeartbeatAck: &syntrixv1.HeartbeatAck{Timestamp: hb.ts}}})
	case *streamerv1.StreamerMessage_Resync:
		a.end = status.Errorf(codes.DataLoss, "streamer: events may have been lost (%s): reconnect and subscribe again", x.Resync.GetReason())
		return a.end
	case *streamerv1.StreamerMessage_Error:
		a.end = status.Error(syntrixStatus(x.Error.GetCode()), x.Error.GetMessage())
		return nil
	case *streamerv1.StreamerMessage_Delivery:
		return a.delivery(x.Delivery)
	}
	return nil // Registered, and anything newer
}

// SendMsg translates a Delivery forwarded from the outbox as encoded.
func (a *syntrixStream) SendMsg(v any) error {
	f, ok := v.(rawFrame)
	if !ok {
		m, isMsg := v.(*streamerv1.StreamerMessage)
		if !isMsg {
			return status.Errorf(codes.Internal, "streamer: the Syntrix adapter cannot send a %T", v)
		}
		return a.Send(m)
	}
	var m streamerv1.StreamerMessage
	if err := proto.Unmarshal(f.bytes(), &m); err != nil {
		return status.Errorf(codes.Internal, "streamer: decoding a delivery: %v", err)
	}
	return a.Send(&m)
}

// delivery sends one EventDelivery per match of d, then acknowledges d
// every syntrixAckEvery deliveries.
func (a *syntrixStream) delivery(d *streamerv1.Delivery) error {
	for _, m := range d.GetMatches() {
		if err := a.sendUp(&syntrixv1.StreamerMessage{Payload: &syntrixv1.StreamerMessage_Delivery{Delivery: &syntrixv1.EventDelivery{
			SubscriptionIds: m.GetSubscriptionIds(), Event: syntrixEvent(m)}}}); err != nil {
			return err
		}
	}
	if len(d.GetEnded()) > 0 {
		e := d.GetEnded()[0]
		a.end = status.Errorf(codes.FailedPrecondition, "%s", e.GetError().GetMessage())
		return a.end
	}
	a.cursor.Store(d.GetCursor())
	if a.sinceAck++; a.sinceAck >= syntrixAckEvery {
		a.sinceAck = 0
		select {
		case a.in <- syntrixItem{msg: a.heartbeat()}:
		default:
		}
	}
	return nil
}

// syntrixEvent is the StreamerEvent of a match: the effective operation,
// the document (or, for a delete, its last version) without id and
// collection.
func syntrixEvent(m *streamerv1.EventMatch) *syntrixv1.StreamerEvent {
	ev := m.GetEvent()
	op := syntrixv1.OperationType_OPERATION_TYPE_UPDATE
	switch m.GetOperation() {
	case streamerv1.Operation_OPERATION_CREATE:
		op = syntrixv1.OperationType_OPERATION_TYPE_INSERT
	case streamerv1.Operation_OPERATION_DELETE:
		op = syntrixv1.OperationType_OPERATION_TYPE_DELETE
	}
	doc := ev.GetDocument()
	if len(doc) == 0 {
		doc = ev.GetBefore()
	}
	return &syntrixv1.StreamerEvent{
		EventId: ev.GetEventId(), Database: ev.GetTenant(), Collection: ev.GetCollection(), DocumentId: ev.GetDocumentId(),
		Operation: op, DocumentData: documentData(doc), Timestamp: ev.GetTimestampMs(),
	}
}

// documentData is doc without its id and collection fields (the Syntrix
// gateway adds both back) and MongoDB's _id.
func documentData(doc []byte) []byte {
	if len(doc) == 0 {
		return nil
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(doc, &fields) != nil {
		return doc
	}
	_, hasID := fields["id"]
	_, hasColl := fields["collection"]
	_, hasMongoID := fields["_id"]
	if !hasID && !hasColl && !hasMongoID {
		return doc
	}
	delete(fields, "id")
	delete(fields, "collection")
	delete(fields, "_id")
	out, err := json.Marshal(fields)
	if err != nil {
		return doc
	}
	return out
}

// subscription translates a SubscribeRequest; refusal says why it is
// refused without reaching the session.
func (a *syntrixStream) subscription(r *syntrixv1.SubscribeRequest) (*streamerv1.Subscription, string) {
	if !a.n.syntrixTenantAllowed(r.GetDatabase()) {
		return nil, fmt.Sprintf("streamer: database %q is not among the tenants this node serves to Syntrix gateways (--syntrix-tenants)", r.GetDatabase())
	}
	sub := &streamerv1.Subscription{SubscriptionId: r.GetSubscriptionId(), Tenant: r.GetDatabase(), Collection: r.GetCollection()}
	fs := r.GetFilters()
	if len(fs) == 1 && fs[0].GetField() == "_id" && fs[0].GetOp() == "==" {
		if id, ok := fs[0].GetValue().GetKind().(*syntrixv1.Value_StringValue); ok {
			sub.Criterion = &streamerv1.Subscription_DocumentId{DocumentId: id.StringValue}
			return sub, ""
		}
	}
	if len(fs) == 0 {
		return sub, ""
	}
	out := make([]*streamerv1.FieldFilter, len(fs))
	for i, f := range fs {
		op := f.GetOp()
		if op == "contains" {
			op = "array-contains"
		}
		out[i] = &streamerv1.FieldFilter{Field: f.GetField(), Op: op}
		if n, isInt := f.GetValue().GetKind().(*syntrixv1.Value_IntValue); isInt {
			out[i].Integer = &n.IntValue // exact, beyond 2^53 too
			continue
		}
		v, err := syntrixValue(f.GetValue())
		if err != nil {
			return nil, fmt.Sprintf("streamer: filter %d (field %q): %v", i, f.GetField(), err)
		}
		out[i].Value = v
	}
	sub.Criterion = &streamerv1.Subscription_Filters{Filters: &streamerv1.FieldFilters{Filters: out}}
	return sub, ""
}

// maxExactInt is the largest magnitude an int_value inside a list may
// have (a list travels as doubles, exact up to 2^53); a scalar int_value is
// exact whatever its size (FieldFilter.integer).
const maxExactInt = 1 << 53

// syntrixValue converts a filter value.
func syntrixValue(v *syntrixv1.Value) (*structpb.Value, error) {
	switch k := v.GetKind().(type) {
	case *syntrixv1.Value_StringValue:
		return structpb.NewStringValue(k.StringValue), nil
	case *syntrixv1.Value_IntValue:
		if k.IntValue > maxExactInt || k.IntValue < -maxExactInt {
			return nil, fmt.Errorf("int_value %d in a list is beyond 2^53, up to which lists are compared exactly", k.IntValue)
		}
		return structpb.NewNumberValue(float64(k.IntValue)), nil
	case *syntrixv1.Value_DoubleValue:
		if math.IsNaN(k.DoubleValue) || math.IsInf(k.DoubleValue, 0) {
			return nil, errors.New("double_value must be finite")
		}
		return structpb.NewNumberValue(k.DoubleValue), nil
	case *syntrixv1.Value_BoolValue:
		return structpb.NewBoolValue(k.BoolValue), nil
	case *syntrixv1.Value_ListValue:
		list := &structpb.ListValue{}
		for _, e := range k.ListValue.GetValues() {
			ev, err := syntrixValue(e)
			if err != nil {
				return nil, err
			}
			list.Values = append(list.Values, ev)
		}
		return structpb.NewListValue(list), nil
	}
	return nil, errors.New("value is not set")
}

// syntrixStatus maps the code of a session's closing Error to a gRPC
// status code.
func syntrixStatus(c streamerv1.ErrorCode) codes.Code {
	switch c {
	case streamerv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED:
		return codes.Unauthenticated
	case streamerv1.ErrorCode_ERROR_CODE_INTERNAL:
		return codes.Internal
	case streamerv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:
		return codes.InvalidArgument
	}
	return codes.Unavailable // expired, superseded, shutting down: reconnect
}

// syntrixTenantAllowed reports whether Syntrix gateways may subscribe to
// tenant.
func (n *Node) syntrixTenantAllowed(tenant string) bool {
	return n.cfg.Syntrix != nil && (slices.Contains(n.cfg.Syntrix.Tenants, "*") || slices.Contains(n.cfg.Syntrix.Tenants, tenant))
}
