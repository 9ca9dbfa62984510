package gateway

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// serveWS serves /v1/ws. Three goroutines per connection, all waited for
// here: this one reads and handles client messages, writeWS drains the
// send queue, pingWS keeps the connection alive. Whoever ends the session
// (a full queue, the client, shutdown, token expiry) closes s.done; writeWS
// then closes the WebSocket with the reason, which ends the read loop.
func (g *Gateway) serveWS(w http.ResponseWriter, r *http.Request) {
	id, ok := g.authenticate(w, r)
	if !ok {
		return
	}
	for k := range r.URL.Query() {
		if k != "access_token" {
			writeHTTPError(w, http.StatusBadRequest, errorf("", CodeBadMessage, "unknown query parameter %q: subscriptions are sent as messages", k))
			return
		}
	}
	s := newSession(transportWS, id, g.cfg.SendQueue, &g.slow[0])
	if !g.begin(s) {
		writeHTTPError(w, http.StatusServiceUnavailable, errorf("", CodeUnavailable, "the gateway is shutting down"))
		return
	}
	defer g.finish()
	g.opened(s, r)
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: g.cfg.OriginPatterns})
	if err != nil { // Accept has answered the request
		s.end(endClientGone, "handshake failed")
		g.hub.endSession(s, false)
		g.closed(s)
		return
	}
	conn.SetReadLimit(g.cfg.MaxMessageBytes)

	// base has no deadline and is never cancelled: reads end when writeWS
	// closes the connection (cancelling a read's context would cut the
	// connection before the close frame is sent).
	base := context.WithoutCancel(r.Context())
	// ops bounds the upstream calls made for this connection's messages; it
	// ends with the session.
	ops, cancelOps := context.WithCancel(base)
	defer cancelOps()
	var wg sync.WaitGroup
	wg.Go(func() {
		g.writeWS(base, conn, s)
		cancelOps()
	})
	wg.Go(func() { g.pingWS(base, conn, s) })
	g.readWS(base, ops, conn, s)
	s.end(endClientGone, "client closed the connection")
	wg.Wait()
	g.hub.endSession(s, false)
	g.closed(s)
}

// readWS handles client messages until the connection ends.
func (g *Gateway) readWS(base, ops context.Context, conn *websocket.Conn, s *session) {
	for {
		typ, data, err := conn.Read(base)
		if err != nil {
			if websocket.CloseStatus(err) == -1 && !errors.Is(err, context.Canceled) {
				g.log.Debug("websocket read ended", "err", err)
			}
			return
		}
		if typ != websocket.MessageText {
			s.enqueue(errorFrame(errorf("", CodeBadMessage, "binary messages are not supported: send JSON text messages")))
			continue
		}
		req, perr := parseRequest(data)
		if perr == nil {
			switch req.typ {
			case "subscribe":
				perr = g.subscribe(ops, s, req.sub, nil)
			case "unsubscribe":
				perr = g.hub.unsubscribe(s, req.sub.id)
			}
		}
		if perr != nil {
			s.enqueue(errorFrame(perr))
		}
	}
}

// writeWS writes queued frames until the session ends, then closes the
// WebSocket with the session's reason.
func (g *Gateway) writeWS(base context.Context, conn *websocket.Conn, s *session) {
	expired, stop := s.expiry(g.cfg.Clock)
	defer stop()
	var (
		batch []frame
		buf   []byte
	)
	write := func(f frame) error {
		buf = f.appendTo(buf[:0])
		if !utf8.Valid(buf) { // frames are built valid (renderBody); a text frame must never be otherwise
			buf = bytes.ToValidUTF8(buf, []byte("\uFFFD"))
		}
		ctx, cancel := context.WithTimeout(base, g.cfg.WriteTimeout)
		defer cancel()
		if err := conn.Write(ctx, websocket.MessageText, buf); err != nil {
			return err
		}
		g.sent[0].Add(1)
		return nil
	}
	for !s.isDone() {
		select {
		case <-s.ready:
			batch = s.take(batch)
			for _, f := range batch {
				if s.isDone() {
					break
				}
				if err := write(f); err != nil {
					s.end(endClientGone, "write failed: "+err.Error())
				}
			}
		case <-expired:
			s.end(endExpired, "access token expired")
		case <-s.done:
		}
	}
	reason, detail := s.ended()
	var err error
	switch reason {
	case endSlow, endExpired:
		err = conn.Close(websocket.StatusPolicyViolation, detail)
	case endShutdown:
		err = conn.Close(websocket.StatusGoingAway, detail)
	case endUpstream:
		err = conn.Close(websocket.StatusInternalError, detail)
	default:
		err = conn.CloseNow()
	}
	if err != nil && reason != endClientGone {
		g.log.Debug("websocket close handshake failed", "reason", detail, "remote", s.remote, "err", err)
	}
}

// pingWS pings the client every KeepAlive; one that does not answer within
// KeepAlive ends the session.
func (g *Gateway) pingWS(base context.Context, conn *websocket.Conn, s *session) {
	t := g.cfg.Clock.NewTicker(g.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C():
			ctx, cancel := context.WithTimeout(base, g.cfg.KeepAlive)
			err := conn.Ping(ctx)
			cancel()
			if err != nil {
				s.end(endClientGone, "ping failed: "+err.Error())
				return
			}
		}
	}
}
