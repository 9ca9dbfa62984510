package service

import (
	"maps"
	"slices"
	"time"

	"github.com/streamerd/streamer/internal/clock"
)

// Per-tenant fairness within a partition.
//
// A partition consumer times the processing of every entry (decoding,
// parsing, matching, routing) and charges it to the entry's tenant, in
// windows of fairWindow on the node's clock. A tenant is heavy on the
// partition for the next window when, in the last one, it used more than
// heavyFloor and more than heavyFactor times the median tenant (the lower
// median: with two tenants, the other one): one tenant's large documents or
// expensive criteria, next to tenants whose events cost little.
//
// A heavy tenant's entries are deferred, not dropped: in each read batch,
// the other tenants' entries are processed and their outbox entries
// appended first, then the heavy tenants' (each tenant's entries stay in
// log order). The light tenants' events then never wait behind the heavy
// one's in the partition. The time used and the entries deferred are
// exported per tenant (streamer_tenant_processing_seconds_total,
// streamer_tenant_deferred_entries_total) and the change logged.
const (
	fairWindow  = time.Second
	heavyFloor  = 10 * time.Millisecond
	heavyFactor = 2
)

// fairness is one partition consumer's accounting; used by its goroutine
// only.
type fairness struct {
	clock   clock.Clock
	start   time.Time                // of the current window
	used    map[string]time.Duration // in the current window
	heavy   map[string]bool          // decided from the last window
	onClose func(used map[string]time.Duration, heavy, light []string)
}

func newFairness(c clock.Clock, onClose func(used map[string]time.Duration, heavy, light []string)) *fairness {
	return &fairness{clock: c, start: c.Now(), used: map[string]time.Duration{}, heavy: map[string]bool{}, onClose: onClose}
}

// charge adds d to tenant's use in the current window.
func (f *fairness) charge(tenant string, d time.Duration) {
	f.used[tenant] += d
}

// isHeavy reports whether tenant's entries are deferred in this window.
func (f *fairness) isHeavy(tenant string) bool { return f.heavy[tenant] }

// anyHeavy reports whether some tenant is heavy in this window.
func (f *fairness) anyHeavy() bool { return len(f.heavy) > 0 }

// rotate closes the window when it is over: it decides the next window's
// heavy tenants from its use, and reports the window (the use per tenant,
// the tenants that became heavy and those that no longer are).
func (f *fairness) rotate() {
	if f.clock.Now().Sub(f.start) < fairWindow {
		return
	}
	f.start = f.clock.Now()
	next := map[string]bool{}
	if len(f.used) > 1 {
		uses := slices.Sorted(maps.Values(f.used))
		median := uses[(len(uses)-1)/2] // the lower one
		for t, d := range f.used {
			if d > heavyFloor && d > heavyFactor*median {
				next[t] = true
			}
		}
	}
	var became, ended []string
	for t := range next {
		if !f.heavy[t] {
			became = append(became, t)
		}
	}
	for t := range f.heavy {
		if !next[t] {
			ended = append(ended, t)
		}
	}
	if f.onClose != nil {
		f.onClose(f.used, became, ended)
	}
	f.heavy = next
	f.used = make(map[string]time.Duration, len(f.used))
}
