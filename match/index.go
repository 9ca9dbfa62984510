package match

import (
	"errors"
	"sync"
	"sync/atomic"
)

// Subscription is what the Index stores: who subscribed (Gateway, ID), where (Tenant,
// Collection) and to what (Criterion, compiled by [Engine.Compile]).
type Subscription struct {
	Gateway    string
	ID         string // unique within Gateway
	Tenant     string
	Collection string
	Criterion  *Compiled
}

// Result is one subscription an event concerns, with the operation to report to it.
type Result struct {
	Gateway string
	ID      string
	Op      Op
}

// IndexStats describes an Index's shape.
type IndexStats struct {
	Subscriptions int // subscriptions indexed
	Groups        int // distinct (tenant, collection, criterion) triples
	Scanned       int // groups evaluated on every event of their collection
}

// Index finds the subscriptions an event concerns without evaluating them all.
//
// Subscriptions with identical criteria in the same (tenant, collection) share one
// group, evaluated once per event. Groups are placed by their criterion: document-id
// criteria in a map by id; criteria that imply "field equals one of these values" (a
// top-level == or in filter, or a top-level && conjunct doc.f == constant in CEL) in an
// inverted index on (field path, value), so that only groups whose indexed value the
// event carries are evaluated; everything else is scanned, in parallel across cores when
// the scan list is long. Tenants and collections never share a structure.
//
// An Index is safe for concurrent use: Match runs concurrently with other Matches and
// is serialized with Add and Remove.
type Index struct {
	// ParallelScan is the scan-list length from which Match evaluates it on all cores
	// (default 2,048; set before use).
	ParallelScan int
	// OnCostExceeded, when set (before use), is told of each CEL evaluation
	// Match stopped at the cost limit, and of the criterion's suspension
	// (see SuspendAfter). Match may call it from several goroutines, under
	// its read lock: it must not call the Index.
	OnCostExceeded func(CostExceeded)

	eng    *Engine // whose CEL counters Match updates; may be nil
	mu     sync.RWMutex
	scopes map[scopeKey]*scope
	subs   map[string]*gatewaySubs
	crits  *critTable // the Engine's, or the Index's own without one
	n      int
}

// critTable holds one Compiled per distinct criterion key, with the number of groups
// that use it. Criteria with equal keys select the same documents, so the groups of
// one criterion in every collection, and in every partition's Index of a node, share
// the first Compiled indexed instead of keeping one each: with the bench's mix, 14,600
// criteria objects become 5,000.
type critTable struct {
	mu sync.Mutex
	m  map[string]*sharedCrit
}

type sharedCrit struct {
	c      *Compiled
	groups int
}

// acquire returns the shared Compiled of c's key (c itself if it is the first) for
// one more group.
func (t *critTable) acquire(c *Compiled) *Compiled {
	t.mu.Lock()
	defer t.mu.Unlock()
	sh := t.m[c.key]
	if sh == nil {
		if t.m == nil {
			t.m = map[string]*sharedCrit{}
		}
		sh = &sharedCrit{c: c}
		t.m[c.key] = sh
	}
	sh.groups++
	return sh.c
}

// release drops one group's use of the criterion with key.
func (t *critTable) release(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sh := t.m[key]; sh != nil {
		if sh.groups--; sh.groups == 0 {
			delete(t.m, key)
		}
	}
}

// The structures below are shaped for the garbage collector as much as for Match: a
// node holds them for as long as it runs, and every collection marks all of them, so
// each object saved per subscription shortens every collection. A subscription is one
// entry in its gateway's map and one value in its group (its id string is its only
// object of its own); a group, its first slot and its first member are one object,
// and so are a posting and its first group.

// gatewaySubs is where one gateway's subscriptions are.
type gatewaySubs struct {
	name string // shared by every member of the gateway
	byID map[string]memberRef
}

// memberRef locates a subscription: members[pos] of grp.
type memberRef struct {
	grp *group
	pos int
}

type scopeKey struct{ tenant, collection string }

// scope holds the groups of one (tenant, collection).
type scope struct {
	key      scopeKey
	groups   map[string]*group // by criterion key
	byID     map[string]*group // document-id groups by id
	paths    map[string]*pathIndex
	pathList []*pathIndex
	scan     []*group
	flat     []flatRow // scanned criteria in the fast lane (flat.go)

	slots      []slotDef
	slotByPath map[string]uint16
	freeSlots  []uint16
}

// pathIndex is the inverted index of one field path.
type pathIndex struct {
	path     []string
	canon    string
	postings map[vkey]*posting
	groups   int
}

type posting struct {
	groups []*group
	first  [1]*group // groups' first backing array
}

func newPosting() *posting {
	p := &posting{}
	p.groups = p.first[:0:1]
	return p
}

type slot struct {
	p   *posting
	key vkey
	pos int
}

type group struct {
	crit    *Compiled
	scope   *scope
	members []member
	scanPos int // position in scope.scan, or -1
	flatPos int // position in scope.flat, or -1
	path    *pathIndex
	slots   []slot // positions in path's postings

	firstMember [1]member // members' first backing array
	firstSlot   [1]slot   // slots' first backing array

	// strikes counts the CEL evaluations in a row that stopped at the cost
	// limit; at SuspendAfter the group is suspended: never evaluated again.
	// Atomic: Match runs under the read lock.
	strikes   atomic.Uint32
	suspended atomic.Bool
}

// SuspendAfter is how many evaluations in a row over the CEL cost limit
// suspend a criterion in a tenant's collection: an expression that runs
// away on this data is not run again on every event, at everyone's
// expense.
const SuspendAfter = 3

type member struct{ gateway, id string }

// CostExceeded is a CEL evaluation that Match stopped at the cost limit.
type CostExceeded struct {
	Tenant, Collection string
	Criterion          string // canonical source
	// Suspended is set when this evaluation suspended the criterion in the
	// tenant's collection (the SuspendAfter-th in a row): the subscriptions
	// sharing it there, which match nothing from then on.
	Suspended []Member
}

// Member is one subscription of an Index.
type Member struct{ Gateway, ID string }

// NewIndex returns an empty Index. Criteria arrive compiled; e (which may be nil)
// receives the counts of the CEL evaluations Match performs.
func NewIndex(e *Engine) *Index {
	ix := &Index{eng: e, ParallelScan: 2048, scopes: map[scopeKey]*scope{}, subs: map[string]*gatewaySubs{}, crits: &critTable{}}
	if e != nil {
		ix.crits = &e.crits
	}
	return ix
}

// Add indexes sub, replacing the subscription with the same (Gateway, ID) if any.
func (ix *Index) Add(sub Subscription) error {
	switch {
	case sub.Criterion == nil:
		return errors.New("match: subscription has no compiled criterion")
	case sub.Gateway == "" || sub.ID == "":
		return errors.New("match: subscription needs a gateway and an id")
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(sub.Gateway, sub.ID)

	sk := scopeKey{sub.Tenant, sub.Collection}
	sc := ix.scopes[sk]
	if sc == nil {
		sc = &scope{key: sk, groups: map[string]*group{}, byID: map[string]*group{}, paths: map[string]*pathIndex{}, slotByPath: map[string]uint16{}}
		ix.scopes[sk] = sc
	}
	g := sc.groups[sub.Criterion.key]
	if g == nil {
		g = sc.place(ix.crits.acquire(sub.Criterion))
	}
	gs := ix.subs[sub.Gateway]
	if gs == nil {
		gs = &gatewaySubs{name: sub.Gateway, byID: map[string]memberRef{}}
		ix.subs[sub.Gateway] = gs
	}
	gs.byID[sub.ID] = memberRef{grp: g, pos: len(g.members)}
	g.members = append(g.members, member{gateway: gs.name, id: sub.ID})
	ix.n++
	return nil
}

// place creates the group of c and files it where Match will find it.
func (sc *scope) place(c *Compiled) *group {
	g := &group{crit: c, scope: sc, scanPos: -1, flatPos: -1}
	g.members = g.firstMember[:0:1]
	sc.groups[c.key] = g
	if c.kind == kindID {
		sc.byID[c.docID] = g
		return g
	}
	if len(c.eq) == 0 {
		if sc.addFlat(g) {
			return g
		}
		g.scanPos = len(sc.scan)
		sc.scan = append(sc.scan, g)
		return g
	}
	// Index on the conjunct whose postings are smallest now: the most selective one
	// this scope has seen so far.
	best, bestSize := 0, -1
	for i, cand := range c.eq {
		size := 0
		if pi := sc.paths[canonicalPath(cand.path)]; pi != nil {
			for _, k := range cand.keys {
				if p := pi.postings[k]; p != nil {
					size += len(p.groups)
				}
			}
		}
		if bestSize < 0 || size < bestSize {
			best, bestSize = i, size
		}
	}
	cand := c.eq[best]
	canon := canonicalPath(cand.path)
	pi := sc.paths[canon]
	if pi == nil {
		pi = &pathIndex{path: cand.path, canon: canon, postings: map[vkey]*posting{}}
		sc.paths[canon] = pi
		sc.pathList = append(sc.pathList, pi)
	}
	pi.groups++
	g.path = pi
	if len(cand.keys) == 1 {
		g.slots = g.firstSlot[:]
	} else {
		g.slots = make([]slot, len(cand.keys))
	}
	for i, k := range cand.keys {
		p := pi.postings[k]
		if p == nil {
			p = newPosting()
			pi.postings[k] = p
		}
		g.slots[i] = slot{p: p, key: k, pos: len(p.groups)}
		p.groups = append(p.groups, g)
	}
	return g
}

// unplace removes an empty group from its scope.
func (sc *scope) unplace(g *group) {
	delete(sc.groups, g.crit.key)
	switch {
	case g.crit.kind == kindID:
		delete(sc.byID, g.crit.docID)
	case g.flatPos >= 0:
		sc.removeFlat(g)
	case g.scanPos >= 0:
		last := sc.scan[len(sc.scan)-1]
		sc.scan[g.scanPos] = last
		last.scanPos = g.scanPos
		sc.scan[len(sc.scan)-1] = nil
		sc.scan = sc.scan[:len(sc.scan)-1]
	default:
		pi := g.path
		for _, s := range g.slots {
			p := s.p
			last := p.groups[len(p.groups)-1]
			p.groups[s.pos] = last
			for i := range last.slots {
				if last.slots[i].p == p {
					last.slots[i].pos = s.pos
				}
			}
			p.groups[len(p.groups)-1] = nil
			p.groups = p.groups[:len(p.groups)-1]
			if len(p.groups) == 0 {
				delete(pi.postings, s.key)
			}
		}
		if pi.groups--; pi.groups == 0 {
			delete(sc.paths, pi.canon)
			for i, x := range sc.pathList {
				if x == pi {
					sc.pathList = append(sc.pathList[:i], sc.pathList[i+1:]...)
					break
				}
			}
		}
	}
}

// Remove drops the subscription (gateway, id) and reports whether it was indexed.
func (ix *Index) Remove(gateway, id string) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.removeLocked(gateway, id)
}

// RemoveGateway drops every subscription of gateway and returns how many there were.
func (ix *Index) RemoveGateway(gateway string) int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	gs := ix.subs[gateway]
	if gs == nil {
		return 0
	}
	n := 0
	for id := range gs.byID {
		if ix.removeLocked(gateway, id) {
			n++
		}
	}
	return n
}

func (ix *Index) removeLocked(gateway, id string) bool {
	gs := ix.subs[gateway]
	if gs == nil {
		return false
	}
	ref, ok := gs.byID[id]
	if !ok {
		return false
	}
	delete(gs.byID, id)
	g := ref.grp
	// The group's last member takes the removed one's place.
	if last := g.members[len(g.members)-1]; ref.pos != len(g.members)-1 {
		g.members[ref.pos] = last
		lgs := ix.subs[last.gateway]
		lgs.byID[last.id] = memberRef{grp: g, pos: ref.pos}
	}
	if len(gs.byID) == 0 {
		delete(ix.subs, gateway)
	}
	g.members[len(g.members)-1] = member{}
	g.members = g.members[:len(g.members)-1]
	if len(g.members) == 0 {
		ix.crits.release(g.crit.key)
		sc := g.scope
		sc.unplace(g)
		if len(sc.groups) == 0 {
			delete(ix.scopes, sc.key)
		}
	}
	ix.n--
	return true
}

// Len returns the number of subscriptions indexed.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.n
}

// Stats describes the Index's shape.
func (ix *Index) Stats() IndexStats {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	st := IndexStats{Subscriptions: ix.n}
	for _, sc := range ix.scopes {
		st.Groups += len(sc.groups)
		st.Scanned += len(sc.scan) + len(sc.flat)
	}
	return st
}
