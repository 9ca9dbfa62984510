// Package testproxy is a TCP proxy for fault tests: it forwards every
// connection it accepts to a target address and, on demand, cuts all live
// connections (both ends closed at once, like a network failure seen by both
// peers), pauses forwarding (connections stay open but no byte moves, like a
// network partition), or refuses new connections. It follows the idea of
// etcd's test bridge.
//
// It is test infrastructure, not a production proxy: no timeouts, no
// metrics, loopback only.
package testproxy

import (
	"fmt"
	"net"
	"sync"
)

// Proxy forwards connections accepted on Addr to a target. Its methods are
// safe for concurrent use.
type Proxy struct {
	lis    net.Listener
	target string

	mu       sync.Mutex
	links    map[*link]struct{}
	resume   chan struct{} // non-nil while paused; closed by Resume
	refuse   bool
	accepted int
	closed   bool

	wg sync.WaitGroup // accept loop and pipes
}

// link is one proxied connection.
type link struct {
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

// New starts a proxy on a free loopback port forwarding to target
// ("host:port").
func New(target string) (*Proxy, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("testproxy: %w", err)
	}
	p := &Proxy{lis: lis, target: target, links: map[*link]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's listening address ("127.0.0.1:port").
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Accepted returns the number of connections accepted so far (including
// refused ones).
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Cut closes every live connection, both towards the client and towards the
// target, and returns how many there were. New connections are accepted as
// usual.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
	return len(links)
}

// Pause stops forwarding bytes in both directions on every connection,
// current and new, until Resume. Connections stay open; bytes already read
// are held and sent on Resume.
func (p *Proxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume == nil {
		p.resume = make(chan struct{})
	}
}

// Resume undoes Pause.
func (p *Proxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume != nil {
		close(p.resume)
		p.resume = nil
	}
}

// Refuse makes the proxy close new connections right after accepting them
// (true) or forward them again (false). Live connections are not affected.
func (p *Proxy) Refuse(refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = refuse
}

// Close stops accepting, cuts every connection and waits for the proxy's
// goroutines to return.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	err := p.lis.Close()
	p.Cut()
	p.Resume()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		p.accepted++
		refuse, closed := p.refuse, p.closed
		p.mu.Unlock()
		if refuse || closed {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		l := &link{client: c, server: s, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.close()
			continue
		}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(l, l.server, l.client) })
		p.wg.Go(func() { p.pipe(l, l.client, l.server) })
	}
}

// pipe copies src to dst until either fails, waiting while paused, then
// closes the whole link.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	defer func() {
		l.close()
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitRunning(l) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil { // EOF or closed: the link ends either way
			return
		}
	}
}

// waitRunning waits while the proxy is paused; false if l was closed.
func (p *Proxy) waitRunning(l *link) bool {
	p.mu.Lock()
	resume := p.resume
	p.mu.Unlock()
	if resume == nil {
		return true
	}
	select {
	case <-resume:
		return true
	case <-l.done:
		return false
	}
}
