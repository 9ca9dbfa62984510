package bench

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pacer waits out the paced publisher's ticks on a timerfd, read through
// the runtime's network poller, rather than on a runtime timer. Two reasons,
// both measured on the 2-core machine of docs/PERFORMANCE.md:
//
//   - Precision. A Go process with nothing to run waits for its next timer
//     in epoll_wait, whose timeout is in whole milliseconds: a sleep until
//     the next 1 ms tick ended 0.55 ms late at the median (1.1 ms at p99).
//     Since events are stamped with the tick they were due at, that delay
//     was counted as Streamer's latency. A timerfd's expiry is a
//     high-resolution kernel timer that makes the descriptor readable: 0.06
//     ms late at the median.
//   - Collections. While the collector marks, Go runs "idle" mark workers on
//     every processor with nothing to do. They give the processor back as
//     soon as a goroutine is runnable or the network poller has something,
//     but they do not look at timers (golang/go#45632): with both processors
//     in idle workers, a tick woke 10–15 ms late, charged to the system under
//     test again. A readable timerfd is network-poller work, which they do
//     check.
//
// A blocking nanosleep would be as precise, but it holds its processor in a
// system call for the whole sleep, which raised the bench's median latency
// by 0.4 ms at 5,000 events/s.
type pacer struct {
	fd  int
	f   *os.File
	buf [8]byte
}

func newPacer() (*pacer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: timerfd_create: %w", err)
	}
	// Not f.Fd() below: it would put the descriptor in blocking mode.
	return &pacer{fd: fd, f: os.NewFile(uintptr(fd), "bench-pacer")}, nil
}

// sleep waits for d (> 0).
func (p *pacer) sleep(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(max(d.Nanoseconds(), 1))}
	if err := unix.TimerfdSettime(p.fd, 0, &spec, nil); err != nil {
		return fmt.Errorf("bench: timerfd_settime: %w", err)
	}
	if _, err := p.f.Read(p.buf[:]); err != nil {
		return fmt.Errorf("bench: timerfd read: %w", err)
	}
	return nil
}

func (p *pacer) close() { _ = p.f.Close() }
