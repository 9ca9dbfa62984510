package match

import (
	"runtime"
	"sync"
)

// Match appends to out one Result per subscription that ev concerns, and returns it.
//
// With a pre-image (ev.Before) a subscription whose criterion held before and after the
// change gets Update, after only Create, before only Delete. Without one, a
// subscription whose criterion holds for the document after the change gets ev.Op. A
// Delete without a pre-image concerns the document-id subscriptions of that document
// and every other subscription of the collection: a redundant delete is harmless, a
// missed one is not. Results are in no particular order.
func (ix *Index) Match(ev *Event, out []Result) []Result {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	sc := ix.scopes[scopeKey{ev.Tenant, ev.Collection}]
	if sc == nil {
		return out
	}
	if ev.Op == Delete && ev.Before == nil {
		for _, g := range sc.groups {
			if g.crit.kind != kindID || g.crit.docID == ev.ID {
				out = g.emit(out, Delete)
			}
		}
		return out
	}
	m := matchers.Get().(*matcher)
	*m = matcher{op: ev.Op, withBefore: ev.Before != nil, eng: ix.eng, onCost: ix.OnCostExceeded, valsA: m.valsA, valsB: m.valsB}
	m.after = image{doc: ev.Doc, id: ev.ID}
	if ev.Op == Delete {
		m.after.doc = nil
	}
	m.before = image{doc: ev.Before, id: ev.ID}
	m.after.eng, m.before.eng = ix.eng, ix.eng
	defer m.release()

	if g := sc.byID[ev.ID]; g != nil {
		out = m.visit(g, out)
	}
	for _, pi := range sc.pathList {
		var ka, kb vkey
		hasA, hasB := false, false
		if m.after.doc != nil {
			if v, ok := lookup(m.after.doc, pi.path); ok {
				ka, hasA = keyOf(v), true
			}
		}
		if m.withBefore {
			if v, ok := lookup(m.before.doc, pi.path); ok {
				kb, hasB = keyOf(v), true
			}
		}
		if hasA {
			if p := pi.postings[ka]; p != nil {
				for _, g := range p.groups {
					out = m.visit(g, out)
				}
			}
		}
		if hasB && (!hasA || kb != ka) {
			if p := pi.postings[kb]; p != nil {
				for _, g := range p.groups {
					if hasA && g.indexedOn(ka) {
						continue // visited through the after-image already
					}
					out = m.visit(g, out)
				}
			}
		}
	}
	if len(sc.flat) > 0 {
		m.valsA = sc.loadSlots(m.after.doc, m.valsA)
		if m.withBefore {
			m.valsB = sc.loadSlots(m.before.doc, m.valsB)
		}
	}
	if len(sc.scan)+len(sc.flat) >= ix.ParallelScan && runtime.GOMAXPROCS(0) > 1 {
		return m.scanParallel(sc.flat, sc.scan, out)
	}
	return m.scan(sc.flat, sc.scan, out)
}

func (m *matcher) flush() {
	m.after.flush()
	m.before.flush()
}

func (g *group) indexedOn(k vkey) bool {
	for _, s := range g.slots {
		if s.key == k {
			return true
		}
	}
	return false
}

func (g *group) emit(out []Result, op Op) []Result {
	for _, m := range g.members {
		out = append(out, Result{Gateway: m.gateway, ID: m.id, Op: op})
	}
	return out
}

// matchers holds matchers between Match calls, with their slot value buffers: a
// node matches every event it reads.
var matchers = sync.Pool{New: func() any { return new(matcher) }}

// release flushes m's counters and returns it to matchers, holding no document.
func (m *matcher) release() {
	m.flush()
	clear(m.valsA)
	clear(m.valsB)
	*m = matcher{valsA: m.valsA[:0], valsB: m.valsB[:0]}
	matchers.Put(m)
}

// matcher evaluates groups against one event's images.
type matcher struct {
	op            Op
	withBefore    bool
	eng           *Engine
	onCost        func(CostExceeded)
	after, before image
	valsA, valsB  []slotVal // slot values of the images, for flat rows
}

// decide turns "matched after" and "matched before" into the operation to report.
func (m *matcher) decide(a, b bool) Op {
	switch {
	case m.withBefore && a && b:
		return Update
	case m.withBefore && a:
		return Create
	case b:
		return Delete
	case a:
		if m.op == Unspecified {
			return Update
		}
		return m.op
	}
	return Unspecified
}

func (m *matcher) visit(g *group, out []Result) []Result {
	if g.suspended.Load() {
		return out
	}
	m.after.overBudget, m.before.overBudget = false, false
	a := m.after.doc != nil && g.crit.eval(&m.after)
	b := m.withBefore && g.crit.eval(&m.before)
	switch {
	case m.after.overBudget || m.before.overBudget:
		var ce CostExceeded
		if g.strikes.Add(1) == SuspendAfter && !g.suspended.Swap(true) {
			m.after.suspended++
			ce.Suspended = make([]Member, len(g.members))
			for i, mb := range g.members {
				ce.Suspended[i] = Member{Gateway: mb.gateway, ID: mb.id}
			}
		}
		if m.onCost != nil {
			ce.Tenant, ce.Collection, ce.Criterion = g.scope.key.tenant, g.scope.key.collection, g.crit.key
			m.onCost(ce)
		}
	case g.strikes.Load() > 0:
		g.strikes.Store(0)
	}
	if op := m.decide(a, b); op != Unspecified {
		return g.emit(out, op)
	}
	return out
}

func (m *matcher) visitFlat(r *flatRow, out []Result) []Result {
	var a, b bool
	if m.after.doc != nil {
		var failed bool
		a, failed = r.eval(m.valsA)
		m.after.countFlat(r, failed)
	}
	if m.withBefore {
		var failed bool
		b, failed = r.eval(m.valsB)
		m.before.countFlat(r, failed)
	}
	if op := m.decide(a, b); op != Unspecified {
		return r.g.emit(out, op)
	}
	return out
}

// countFlat counts a flat row's evaluation when it stands for a CEL expression.
func (img *image) countFlat(r *flatRow, failed bool) {
	if r.cel {
		img.evals++
		if failed {
			img.evalErrors++
		}
	}
}

func (m *matcher) scan(flat []flatRow, scan []*group, out []Result) []Result {
	for i := range flat {
		out = m.visitFlat(&flat[i], out)
	}
	for _, g := range scan {
		out = m.visit(g, out)
	}
	return out
}

// scanParallel splits the scan lists across all cores. The images' CEL activations and
// slot values are built first, so the workers only read shared state.
func (m *matcher) scanParallel(flat []flatRow, scan []*group, out []Result) []Result {
	m.after.prepare()
	m.before.prepare()
	workers := runtime.GOMAXPROCS(0)
	parts := make([][]Result, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		fl, fh := split(len(flat), w, workers)
		sl, sh := split(len(scan), w, workers)
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := *m // counters are per worker
			local.after.evals, local.after.evalErrors, local.before.evals, local.before.evalErrors = 0, 0, 0, 0
			local.after.suspended, local.before.suspended = 0, 0
			parts[w] = local.scan(flat[fl:fh], scan[sl:sh], nil)
			local.flush()
		}()
	}
	wg.Wait()
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// split returns worker w's share [lo, hi) of n items.
func split(n, w, workers int) (lo, hi int) {
	chunk := (n + workers - 1) / workers
	return min(w*chunk, n), min((w+1)*chunk, n)
}
