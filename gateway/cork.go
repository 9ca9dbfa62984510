package gateway

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// Write coalescing.
//
// The WebSocket library writes and flushes each message on its own: one
// write(2) per message per connection, the largest cost of fanning events
// out. A connection's writer drains everything queued since its last write
// (session.take) and writes it as one: it corks the connection, writes each
// message (a complete WebSocket frame, one JSON envelope per message), and
// uncorks it, which writes the frames together under one deadline. The
// library still frames, masks nothing (server side) and handles control
// frames; only the bytes it flushes to the network are held while corked.
// A control frame the library sends meanwhile (a pong, from the reader)
// joins the corked bytes and leaves with them.

// corkLimit is how many corked bytes are written out early, bounding a
// corked connection's memory.
const corkLimit = 64 << 10

// corkConn is the network connection under a WebSocket: writes pass
// through, except between cork and uncork, when they are held.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
	err    error // a failed early write while corked, reported by uncork
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.Conn.Write(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	if len(c.buf) >= corkLimit {
		c.err = c.flushLocked()
	}
	return len(p), nil
}

// cork holds writes until uncork.
func (c *corkConn) cork(deadline time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = true
	_ = c.Conn.SetWriteDeadline(deadline)
}

// uncork writes what was held, in one write, within the deadline given to
// cork, and lets writes pass through again.
func (c *corkConn) uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	err := c.err
	if err == nil {
		err = c.flushLocked()
	}
	c.err = nil
	_ = c.Conn.SetWriteDeadline(time.Time{})
	if cap(c.buf) > 16<<10 {
		c.buf = nil // a burst's memory is not kept on an idle connection
	}
	return err
}

func (c *corkConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// libraryBuffer is the size of the WebSocket library's write buffer: small,
// since the corkConn under it gathers the writes (one per connection).
const libraryBuffer = 512

// corkWriter is the ResponseWriter given to the WebSocket library's
// handshake: its Hijack wraps the connection in a corkConn.
type corkWriter struct {
	http.ResponseWriter
	conn *corkConn
}

func (w *corkWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: conn}
	// The reader keeps what the server read ahead; the writer is the
	// library's, over the corkConn (the server's has nothing buffered: the
	// handshake response was flushed by Hijack).
	return w.conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriterSize(w.conn, libraryBuffer)), nil
}
