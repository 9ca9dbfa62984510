package service

import (
	"strconv"
	"sync"
	"time"

	"github.com/streamerd/streamer/internal/clock"
)

// costCooldown is how long a CEL criterion ended for its cost stays refused
// in its tenant's collection: subscribing it again at once would cost the
// pool the same over-limit evaluations again, as often as the subscriber
// cares to retry.
const costCooldown = time.Minute

// maxCostBans bounds the criteria remembered; beyond it the one closest to
// the end of its cooldown is forgotten.
const maxCostBans = 10_000

// costBans remembers, node-wide, the CEL criteria ended for their cost, per
// tenant's collection, until their cooldown is over. Subscribe refuses them
// (on this node), and a partition consumer ends them again without
// evaluating them (whichever node took the subscription).
type costBans struct {
	clock clock.Clock
	mu    sync.Mutex
	until map[string]time.Time
}

func newCostBans(c clock.Clock) *costBans {
	return &costBans{clock: c, until: map[string]time.Time{}}
}

func costBanKey(tenant, collection, criterion string) string {
	return strconv.Quote(tenant) + " " + strconv.Quote(collection) + " " + criterion
}

// ban refuses the criterion in tenant's collection for costCooldown.
func (b *costBans) ban(tenant, collection, criterion string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	if len(b.until) >= maxCostBans {
		var soonest string
		for k, t := range b.until {
			if !t.After(now) {
				delete(b.until, k)
			} else if soonest == "" || t.Before(b.until[soonest]) {
				soonest = k
			}
		}
		if len(b.until) >= maxCostBans {
			delete(b.until, soonest)
		}
	}
	b.until[costBanKey(tenant, collection, criterion)] = now.Add(costCooldown)
}

// banned returns how long the criterion stays refused (0: it is not).
func (b *costBans) banned(tenant, collection, criterion string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := costBanKey(tenant, collection, criterion)
	until, ok := b.until[k]
	if !ok {
		return 0
	}
	left := until.Sub(b.clock.Now())
	if left <= 0 {
		delete(b.until, k)
		return 0
	}
	return left
}
