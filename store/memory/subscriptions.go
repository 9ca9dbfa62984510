package memory

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/streamerd/streamer/store"
)

// Subscriptions is the memory store.Subscriptions. Obtain it from New.
type Subscriptions struct {
	life       *lifecycle
	sessions   *Sessions // whose records Forget drops too
	partitions int

	mu       sync.Mutex
	gateways map[string]*gatewaySubs        // registered gateways, until Forget
	parts    map[string]map[string]subPlace // gateway → subscription id → where it was last Put
	tenants  map[string]int                 // tenant → subscriptions of registered gateways
}

// subPlace is the partition and tenant of a stored subscription.
type subPlace struct {
	partition int
	tenant    string
}

var _ store.Subscriptions = (*Subscriptions)(nil)

// gatewaySubs is one registered gateway.
type gatewaySubs struct {
	deadline time.Time
	subs     map[string][]byte // nil once the deadline has passed (the hash expired)
}

func newSubscriptions(life *lifecycle, sessions *Sessions, partitions int) *Subscriptions {
	return &Subscriptions{life: life, sessions: sessions, partitions: partitions,
		gateways: map[string]*gatewaySubs{}, parts: map[string]map[string]subPlace{}, tenants: map[string]int{}}
}

// live returns gateway's subscriptions, nil when it is unknown or expired;
// it drops the data of an expired gateway, as PEXPIRE would.
func (s *Subscriptions) live(gateway string, now time.Time) map[string][]byte {
	g := s.gateways[gateway]
	if g == nil {
		return nil
	}
	if !g.deadline.After(now) {
		g.subs = nil
	}
	return g.subs
}

// refresh registers gateway, or keeps it, with deadline now+ttl and returns
// its (possibly new, empty) subscriptions.
func (s *Subscriptions) refresh(gateway string, now time.Time, ttl time.Duration) map[string][]byte {
	subs := s.live(gateway, now)
	if subs == nil {
		subs = map[string][]byte{}
	}
	s.gateways[gateway] = &gatewaySubs{deadline: now.Add(ttl), subs: subs}
	return subs
}

// Put implements store.Subscriptions.
func (s *Subscriptions) Put(ctx context.Context, gateway string, sub store.StoredSubscription, ttl time.Duration) error {
	if err := s.args(ctx, "put", gateway); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	if p := sub.Partition; p < 0 || p >= s.partitions {
		return fmt.Errorf("memory: subscriptions put: %w: partition %d of %d", store.ErrInvalid, p, s.partitions)
	}
	data := clone(sub.Data)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh(gateway, s.life.clock.Now(), ttl)[sub.ID] = data
	if s.parts[gateway] == nil {
		s.parts[gateway] = map[string]subPlace{}
	}
	if old, ok := s.parts[gateway][sub.ID]; ok {
		s.tenants[old.tenant]--
	}
	s.parts[gateway][sub.ID] = subPlace{partition: sub.Partition, tenant: sub.Tenant}
	s.tenants[sub.Tenant]++
	return nil
}

// TenantCount implements store.Subscriptions.
func (s *Subscriptions) TenantCount(ctx context.Context, tenant string) (int, error) {
	if err := s.life.check(ctx); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tenants[tenant], nil
}

// ListPartition implements store.Subscriptions.
func (s *Subscriptions) ListPartition(ctx context.Context, gateway string, p int) (map[string][]byte, error) {
	if err := s.args(ctx, "list partition", gateway); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]byte{}
	parts := s.parts[gateway]
	for id, data := range s.live(gateway, s.life.clock.Now()) {
		if place, ok := parts[id]; ok && place.partition == p {
			out[id] = clone(data)
		}
	}
	return out, nil
}

// Delete implements store.Subscriptions.
func (s *Subscriptions) Delete(ctx context.Context, gateway, id string) (bool, error) {
	if err := s.args(ctx, "delete", gateway); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	subs := s.live(gateway, s.life.clock.Now())
	_, existed := subs[id]
	delete(subs, id)
	if place, ok := s.parts[gateway][id]; ok {
		s.tenants[place.tenant]--
		delete(s.parts[gateway], id)
	}
	return existed, nil
}

// Get implements store.Subscriptions.
func (s *Subscriptions) Get(ctx context.Context, gateway, id string) ([]byte, bool, error) {
	if err := s.args(ctx, "get", gateway); err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	data, found := s.live(gateway, s.life.clock.Now())[id]
	if !found {
		return nil, false, nil
	}
	return clone(data), true, nil
}

// List implements store.Subscriptions.
func (s *Subscriptions) List(ctx context.Context, gateway string) (map[string][]byte, error) {
	if err := s.args(ctx, "list", gateway); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	subs := s.live(gateway, s.life.clock.Now())
	out := make(map[string][]byte, len(subs))
	for id, data := range subs {
		out[id] = clone(data)
	}
	return out, nil
}

// Count implements store.Subscriptions.
func (s *Subscriptions) Count(ctx context.Context, gateway string) (int, error) {
	if err := s.args(ctx, "count", gateway); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live(gateway, s.life.clock.Now())), nil
}

// Touch implements store.Subscriptions.
func (s *Subscriptions) Touch(ctx context.Context, gateway string, ttl time.Duration) error {
	if err := s.args(ctx, "touch", gateway); err != nil {
		return err
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refresh(gateway, s.life.clock.Now(), ttl)
	return nil
}

// Live implements store.Subscriptions.
func (s *Subscriptions) Live(ctx context.Context) ([]string, error) {
	return s.byDeadline(ctx, s.life.clock.Now(), true)
}

// Expired implements store.Subscriptions.
func (s *Subscriptions) Expired(ctx context.Context, now time.Time) ([]string, error) {
	return s.byDeadline(ctx, now, false)
}

// byDeadline returns the sorted gateways whose deadline is after now (live) or
// at or before it (!live).
func (s *Subscriptions) byDeadline(ctx context.Context, now time.Time, live bool) ([]string, error) {
	if err := s.life.check(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for gw, g := range s.gateways {
		if g.deadline.After(now) == live {
			out = append(out, gw)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Forget implements store.Subscriptions.
func (s *Subscriptions) Forget(ctx context.Context, gateway string) error {
	if err := s.args(ctx, "forget", gateway); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.gateways, gateway)
	for _, place := range s.parts[gateway] {
		s.tenants[place.tenant]--
	}
	delete(s.parts, gateway)
	s.mu.Unlock()
	s.sessions.forget(gateway)
	return nil
}

// args runs the checks every method starts with.
func (s *Subscriptions) args(ctx context.Context, op, gateway string) error {
	if err := s.life.check(ctx); err != nil {
		return err
	}
	if err := needName("gateway", gateway); err != nil {
		return fmt.Errorf("memory: subscriptions %s: %w", op, err)
	}
	return nil
}
