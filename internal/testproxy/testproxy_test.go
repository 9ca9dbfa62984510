package testproxy

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer echoes lines until the connection closes.
func echoServer(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(c, c) })
		}
	})
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return lis.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string) (string, error) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	return line, err
}

func TestProxy(t *testing.T) {
	p, err := New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(t, c, r, "hello"); err != nil || got != "hello\n" {
		t.Fatalf("echo: %q %v", got, err)
	}

	t.Run("pause holds bytes until resume", func(t *testing.T) {
		p.Pause()
		if _, err := c.Write([]byte("held\n")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) // absence check
		if _, err := r.ReadString('\n'); err == nil {
			t.Fatal("bytes went through while paused")
		}
		p.Resume()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if got, err := r.ReadString('\n'); err != nil || got != "held\n" {
			t.Fatalf("after resume: %q %v", got, err)
		}
	})

	t.Run("cut closes live connections", func(t *testing.T) {
		if n := p.Cut(); n != 1 {
			t.Fatalf("cut %d connections, want 1", n)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.ReadString('\n'); err == nil {
			t.Fatal("connection still readable after Cut")
		}
	})

	t.Run("refuse closes new connections", func(t *testing.T) {
		p.Refuse(true)
		c2, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if _, err := roundTrip(t, c2, bufio.NewReader(c2), "x"); err == nil {
			t.Fatal("refused connection echoed")
		}
		p.Refuse(false)
		c3, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c3.Close()
		if got, err := roundTrip(t, c3, bufio.NewReader(c3), "again"); err != nil || got != "again\n" {
			t.Fatalf("after refuse(false): %q %v", got, err)
		}
		if p.Accepted() != 3 {
			t.Errorf("accepted %d, want 3", p.Accepted())
		}
	})
}
