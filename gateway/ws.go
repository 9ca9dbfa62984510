package gateway

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// serveWS serves /v1/ws. Two goroutines per connection, both waited for
// here: this one reads and handles client messages, writeWS drains the
// send queue and starts keep-alive pings (each in a goroutine until its
// pong). Whoever ends the session
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
	s := g.start(w, r, transportWS, id, false)
	if s == nil {
		return
	}
	defer g.finish()
	if g.runWS(w, r, s, g.cfg.OriginPatterns, func(base, ops context.Context, conn *websocket.Conn) bool {
		return g.readWS(base, ops, conn, s)
	}) {
		g.endResumable(s)
	}
}

// runWS upgrades the request of the registered session s (origins allowed
// by originPatterns besides the gateway's host) and serves it until the
// connection ends: this goroutine runs read, which handles the client's
// messages and reports whether the client closed with a close frame;
// writeWS drains the send queue. false: the handshake failed, the request
// is answered and the session ended.
func (g *Gateway) runWS(w http.ResponseWriter, r *http.Request, s *session, originPatterns []string,
	read func(base, ops context.Context, conn *websocket.Conn) (closed bool)) bool {
	cw := &corkWriter{ResponseWriter: w}
	opts := &websocket.AcceptOptions{OriginPatterns: originPatterns}
	if g.cfg.Compression {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	conn, err := websocket.Accept(cw, r, opts)
	if err == nil && cw.conn == nil {
		err = errors.New("the handshake did not hijack the connection") // cannot happen: Accept hijacks
		conn.CloseNow()
	}
	if err != nil { // Accept has answered the request
		s.end(endClientGone, "handshake failed")
		g.hub.endSession(s, false)
		g.closed(s)
		return false
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
		g.writeWS(conn, cw.conn, s)
		cancelOps()
	})
	if read(base, ops, conn) {
		s.end(endClosed, "client closed the connection")
	}
	s.end(endClientGone, "connection lost")
	wg.Wait()
	return true
}

// readWS handles client messages until the connection ends; closed
// reports that the client ended it with a close frame.
func (g *Gateway) readWS(base, ops context.Context, conn *websocket.Conn, s *session) (closed bool) {
	for {
		typ, data, err := conn.Read(base)
		if err != nil {
			if websocket.CloseStatus(err) == -1 && !errors.Is(err, context.Canceled) {
				g.log.Debug("websocket read ended", "err", err)
			}
			return websocket.CloseStatus(err) != -1
		}
		if typ != websocket.MessageText {
			s.enqueue(errorFrame(errorf("", CodeBadMessage, "binary messages are not supported: send JSON text messages")))
			continue
		}
		req, perr := parseRequest(data)
		if perr == nil {
			switch req.typ {
			case "subscribe":
				perr = g.subscribe(ops, s, req.sub, req.sub.after)
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
// WebSocket with the session's reason. Each wake-up writes everything queued
// since the last one in one write under one deadline (see corkConn); the
// messages themselves are written with no context of their own.
func (g *Gateway) writeWS(conn *websocket.Conn, cc *corkConn, s *session) {
	expired, stop := s.expiry(g.cfg.Clock)
	defer func() { stop() }()
	// Keep-alive pings are started here, rather than by a goroutine per
	// connection waiting for the next tick.
	keepAlive := g.cfg.Clock.NewTicker(g.cfg.KeepAlive)
	defer keepAlive.Stop()
	var heartbeat <-chan time.Time // Syntrix's protocol: an application heartbeat
	if s.syntrix {
		t := g.cfg.Clock.NewTicker(g.cfg.SyntrixHeartbeat)
		defer t.Stop()
		heartbeat = t.C()
	}
	var (
		batch   []frame
		buf     []byte
		pinging atomic.Bool
		pings   sync.WaitGroup
	)
	defer pings.Wait()
	ctx := context.Background() // never cancelled: the deadline is the corkConn's
	for !s.isDone() {
		select {
		case <-s.ready:
			batch = s.take(batch)
			cc.cork(time.Now().Add(g.cfg.WriteTimeout))
			var err error
			sent := 0
			for _, f := range batch {
				if s.isDone() {
					break
				}
				// Frames are valid UTF-8 by construction: JSON encoded, with
				// event documents made valid in renderBody.
				buf = f.appendTo(buf[:0])
				if err = conn.Write(ctx, websocket.MessageText, buf); err != nil {
					break
				}
				sent++
			}
			if uerr := cc.uncork(); err == nil {
				err = uerr
			}
			if err != nil {
				s.end(endClientGone, "write failed: "+err.Error())
			}
			g.sent[0].Add(uint64(sent))
			if cap(buf) > 1<<20 {
				buf = nil
			}
		case <-keepAlive.C():
			g.ping(conn, s, &pinging, &pings)
		case <-heartbeat:
			s.enqueue(syntrixFrame("", syntrixHeartbeat, nil))
		case <-s.rearm:
			stop()
			expired, stop = s.expiry(g.cfg.Clock)
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
	case endResync:
		err = conn.Close(websocket.StatusTryAgainLater, detail)
	default:
		err = conn.CloseNow()
	}
	if err != nil && reason != endClientGone && reason != endClosed {
		g.log.Debug("websocket close handshake failed", "reason", detail, "remote", s.remote, "err", err)
	}
}

// ping pings the client, in a goroutine of its own that lives until the
// pong (the library waits for it); one that does not answer within
// KeepAlive ends the session. inflight is set while a ping waits.
func (g *Gateway) ping(conn *websocket.Conn, s *session, inflight *atomic.Bool, wg *sync.WaitGroup) {
	if !inflight.CompareAndSwap(false, true) {
		return // the previous ping has its own deadline
	}
	wg.Go(func() {
		defer inflight.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), g.cfg.KeepAlive)
		err := conn.Ping(ctx)
		cancel()
		if err != nil {
			s.end(endClientGone, "ping failed: "+err.Error())
		}
	})
}
