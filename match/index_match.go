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
	m := matcher{op: ev.Op, withBefore: ev.Before != nil}
	m.after = image{doc: ev.Doc, id: ev.ID}
	if ev.Op == Delete {
		m.after.doc = nil
	}
	m.before = image{doc: ev.Before, id: ev.ID}
	defer m.flush()

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
	if len(sc.scan) >= ix.ParallelScan && runtime.GOMAXPROCS(0) > 1 {
		return m.scanParallel(sc.scan, out)
	}
	for _, g := range sc.scan {
		out = m.visit(g, out)
	}
	return out
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

// matcher evaluates groups against one event's images.
type matcher struct {
	op            Op
	withBefore    bool
	after, before image
}

func (m *matcher) visit(g *group, out []Result) []Result {
	a := m.after.doc != nil && g.crit.eval(&m.after)
	b := m.withBefore && g.crit.eval(&m.before)
	var op Op
	switch {
	case m.withBefore && a && b:
		op = Update
	case m.withBefore && a:
		op = Create
	case b:
		op = Delete
	case a:
		op = m.op
		if op == Unspecified {
			op = Update
		}
	default:
		return out
	}
	return g.emit(out, op)
}

// scanParallel evaluates the scan list on all cores. The images' CEL activations are
// built first so the workers only read shared state.
func (m *matcher) scanParallel(scan []*group, out []Result) []Result {
	m.after.prepare()
	m.before.prepare()
	workers := runtime.GOMAXPROCS(0)
	parts := make([][]Result, workers)
	chunk := (len(scan) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, len(scan))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := *m // the activations are shared read-only; counters are per worker
			local.after.evals, local.after.evalErrors, local.before.evals, local.before.evalErrors = 0, 0, 0, 0
			var res []Result
			for _, g := range scan[lo:hi] {
				res = local.visit(g, res)
			}
			local.flush()
			parts[w] = res
		}()
	}
	wg.Wait()
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}
