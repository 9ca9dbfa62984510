package match

import "strings"

// Flat rows: the scan list's fast lane.
//
// Scanned criteria that are short conjunctions of scalar comparisons — natively
// evaluated CEL, or Firestore ==, !=, <, <=, >, >= filters with scalar values — are
// stored as fixed-size rows in one contiguous slice per scope. Each comparison names a
// slot: a field path whose value Match looks up once per event, not once per
// subscription. A scan over 100,000 such rows then reads memory sequentially instead
// of chasing pointers through the heap.

// maxFlatPreds is the most comparisons a flat row holds.
const maxFlatPreds = 3

type flatPred struct {
	str   string
	num   float64
	slot  uint16
	op    cmpOp
	class class // the literal's class
}

type flatRow struct {
	g     *group
	preds [maxFlatPreds]flatPred
	n     uint8
	cel   bool // CEL semantics; otherwise Firestore's
}

// slotVal is one slot's value in the document being matched.
type slotVal struct {
	v       any
	present bool
}

// flatPlan converts a criterion to the comparisons of a flat row, or reports that it
// cannot be one. Paths are returned for the caller to map to slots.
func flatPlan(c *Compiled) (preds []flatPred, paths [][]string, cel, ok bool) {
	scalar := func(v any) (flatPred, bool) {
		switch x := v.(type) {
		case nil:
			return flatPred{class: classNull}, true
		case bool:
			p := flatPred{class: classBool}
			if x {
				p.num = 1
			}
			return p, true
		case float64:
			return flatPred{class: classNumber, num: x}, true
		case string:
			return flatPred{class: classString, str: x}, true
		}
		return flatPred{}, false
	}
	switch c.kind {
	case kindCEL:
		if !c.cel.isNative {
			return nil, nil, false, false
		}
		cmps, ok := c.cel.native.comparisons()
		if !ok || len(cmps) > maxFlatPreds {
			return nil, nil, false, false
		}
		for _, cmp := range cmps {
			if cmp.path == nil {
				return nil, nil, false, false // id comparisons stay on the general path
			}
			p, ok := scalar(cmp.lit)
			if !ok {
				return nil, nil, false, false
			}
			p.op = cmp.op
			preds, paths = append(preds, p), append(paths, cmp.path)
		}
		return preds, paths, true, true
	case kindFilters:
		if len(c.filters) > maxFlatPreds {
			return nil, nil, false, false
		}
		ops := map[Operator]cmpOp{OpEqual: cmpEq, OpNotEqual: cmpNe, OpLess: cmpLt, OpLessEqual: cmpLe, OpGreater: cmpGt, OpGreaterEqual: cmpGe}
		for _, f := range c.filters {
			op, known := ops[f.op]
			p, ok := scalar(f.value)
			if !known || !ok {
				return nil, nil, false, false
			}
			p.op = op
			preds, paths = append(preds, p), append(paths, f.path)
		}
		return preds, paths, false, true
	}
	return nil, nil, false, false
}

// scalarEqual is equality between a document value and a scalar literal.
func (p *flatPred) scalarEqual(v any) bool {
	switch x := v.(type) {
	case nil:
		return p.class == classNull
	case bool:
		return p.class == classBool && (p.num == 1) == x
	case float64:
		return p.class == classNumber && p.num == x
	case string:
		return p.class == classString && p.str == x
	}
	return false
}

// order compares a document value with the literal when both have the same class;
// ok is false when they do not.
func (p *flatPred) order(v any) (c int, ok bool) {
	switch x := v.(type) {
	case bool:
		if p.class != classBool {
			return 0, false
		}
		y := p.num == 1
		switch {
		case x == y:
			return 0, true
		case !x:
			return -1, true
		}
		return 1, true
	case float64:
		if p.class != classNumber {
			return 0, false
		}
		return cmpFloat(x, p.num), true
	case int64: // beyond float64's exact integers
		if p.class != classNumber {
			return 0, false
		}
		return cmpIntFloat(x, p.num), true
	case string:
		if p.class != classString {
			return 0, false
		}
		return strings.Compare(x, p.str), true
	}
	return 0, false
}

func rangeHolds(op cmpOp, c int) bool {
	switch op {
	case cmpLt:
		return c < 0
	case cmpLe:
		return c <= 0
	case cmpGt:
		return c > 0
	}
	return c >= 0
}

// eval evaluates the row against a document's slot values. failed reports a CEL
// evaluation error (a missing field or an ordering between different types); for
// Firestore rows it is always false.
func (r *flatRow) eval(vals []slotVal) (match, failed bool) {
	for i := uint8(0); i < r.n; i++ {
		p := &r.preds[i]
		sv := vals[p.slot]
		if !sv.present {
			if !r.cel {
				return false, false
			}
			failed = true
			continue
		}
		var holds bool
		switch p.op {
		case cmpEq:
			holds = p.scalarEqual(sv.v)
		case cmpNe:
			holds = !p.scalarEqual(sv.v) && (r.cel || sv.v != nil)
		default:
			c, ok := p.order(sv.v)
			if !ok {
				if r.cel {
					failed = true
					continue
				}
				return false, false
			}
			holds = rangeHolds(p.op, c)
		}
		if !holds {
			return false, false // in CEL too: false wins over an error
		}
	}
	return !failed, failed
}

// addFlat files g as a flat row if its criterion allows it.
func (sc *scope) addFlat(g *group) bool {
	preds, paths, cel, ok := flatPlan(g.crit)
	if !ok {
		return false
	}
	row := flatRow{g: g, n: uint8(len(preds)), cel: cel}
	for i, p := range preds {
		p.slot = sc.slotFor(paths[i])
		row.preds[i] = p
	}
	g.flatPos = len(sc.flat)
	sc.flat = append(sc.flat, row)
	return true
}

func (sc *scope) removeFlat(g *group) {
	row := sc.flat[g.flatPos]
	for i := uint8(0); i < row.n; i++ {
		sc.releaseSlot(row.preds[i].slot)
	}
	last := len(sc.flat) - 1
	sc.flat[g.flatPos] = sc.flat[last]
	sc.flat[g.flatPos].g.flatPos = g.flatPos
	sc.flat[last] = flatRow{}
	sc.flat = sc.flat[:last]
}

// slotFor returns the slot of path, allocating it (or reusing a freed one).
func (sc *scope) slotFor(path []string) uint16 {
	key := canonicalPath(path)
	if s, ok := sc.slotByPath[key]; ok {
		sc.slots[s].refs++
		return s
	}
	var s uint16
	if n := len(sc.freeSlots); n > 0 {
		s, sc.freeSlots = sc.freeSlots[n-1], sc.freeSlots[:n-1]
		sc.slots[s] = slotDef{path: path, key: key, refs: 1}
	} else {
		s = uint16(len(sc.slots))
		sc.slots = append(sc.slots, slotDef{path: path, key: key, refs: 1})
	}
	sc.slotByPath[key] = s
	return s
}

func (sc *scope) releaseSlot(s uint16) {
	if sc.slots[s].refs--; sc.slots[s].refs == 0 {
		delete(sc.slotByPath, sc.slots[s].key)
		sc.slots[s] = slotDef{}
		sc.freeSlots = append(sc.freeSlots, s)
	}
}

type slotDef struct {
	path []string // nil: free
	key  string
	refs int
}

// loadSlots looks up every slot's value in doc (all absent for a nil doc).
func (sc *scope) loadSlots(doc map[string]any, buf []slotVal) []slotVal {
	buf = append(buf[:0], make([]slotVal, len(sc.slots))...)
	if doc == nil {
		return buf
	}
	for i, s := range sc.slots {
		if s.path != nil {
			buf[i].v, buf[i].present = lookup(doc, s.path)
		}
	}
	return buf
}
