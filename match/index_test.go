package match

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// reference computes Match's answer by evaluating every subscription, as DESIGN §2
// states the semantics, without the index.
func reference(subs map[string]Subscription, ev *Event) []string {
	var out []string
	for _, s := range subs {
		if s.Tenant != ev.Tenant || s.Collection != ev.Collection {
			continue
		}
		var op Op
		switch {
		case ev.Op == Delete && ev.Before == nil:
			if s.Criterion.kind != kindID || s.Criterion.docID == ev.ID {
				op = Delete
			}
		default:
			a := ev.Op != Delete && ev.Doc != nil && s.Criterion.Match(ev.Doc, ev.ID)
			b := ev.Before != nil && s.Criterion.Match(ev.Before, ev.ID)
			switch {
			case ev.Before != nil && a && b:
				op = Update
			case ev.Before != nil && a:
				op = Create
			case b:
				op = Delete
			case a:
				op = ev.Op
			}
		}
		if op != Unspecified {
			out = append(out, fmt.Sprintf("%s/%s:%s", s.Gateway, s.ID, op))
		}
	}
	slices.Sort(out)
	return out
}

func resultStrings(rs []Result) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s/%s:%s", r.Gateway, r.ID, r.Op)
	}
	slices.Sort(out)
	return out
}

var (
	propValues = []string{`0`, `1`, `2`, `-0`, `1.5`, `"x"`, `"y"`, `""`, `true`, `false`, `null`, `[1,2]`, `[2,1]`, `{"k":1}`, `{"k":"x"}`}
	propFields = []string{"a", "b", "c", "o.x"}
	propOps    = []Operator{OpEqual, OpEqual, OpEqual, OpIn, OpNotEqual, OpLess, OpGreaterEqual, OpNotIn, OpArrayContains, OpArrayContainsAny}
	propCEL    = []string{
		`doc.a == %s`, `doc.a == %s && doc.b != null`, `doc.b == %s || doc.a == 1`, `has(doc.c)`,
		`doc["o"]["x"] == %s`, `%s == doc.c && id != "d3"`, `id == "d1" && doc.a == %s`,
		`doc.a > %s`, `doc.b != %s && doc.o.x <= %s`, `%s < doc.c`, `doc.a >= %s && doc.b < %s && doc.c != %s`,
		`doc.a.x != %s`, `id > %s`,
	}
)

func randValue(r *rand.Rand) string { return propValues[r.IntN(len(propValues))] }

func randScalar(r *rand.Rand) string {
	for {
		if v := randValue(r); !strings.ContainsAny(v, "[{") {
			return v
		}
	}
}

func randCriterion(r *rand.Rand) Criterion {
	switch r.IntN(10) {
	case 0:
		return Criterion{DocumentID: fmt.Sprintf("d%d", r.IntN(5))}
	case 1:
		return Criterion{}
	case 2, 3:
		tmpl := propCEL[r.IntN(len(propCEL))]
		args := make([]any, strings.Count(tmpl, "%s"))
		for i := range args {
			args[i] = strings.ReplaceAll(randScalar(r), "-0", "0")
		}
		return Criterion{CEL: fmt.Sprintf(tmpl, args...)}
	}
	n := 1 + r.IntN(3)
	parts := make([]string, n)
	for i := range parts {
		op := propOps[r.IntN(len(propOps))]
		v := randValue(r)
		switch op {
		case OpIn, OpNotIn, OpArrayContainsAny:
			v = "[" + randValue(r) + "," + randValue(r) + "]"
		case OpLess, OpGreaterEqual:
			if v == "null" {
				v = "1"
			}
		}
		parts[i] = fmt.Sprintf(`[%q, %q, %s]`, propFields[r.IntN(len(propFields))], op, v)
	}
	var fs []Filter
	if err := jsonUnmarshal("["+strings.Join(parts, ",")+"]", &fs); err != nil {
		panic(err)
	}
	return Criterion{Filters: fs}
}

func randDoc(r *rand.Rand) map[string]any {
	var fields []string
	for _, f := range []string{"a", "b", "c"} {
		if r.IntN(4) > 0 {
			fields = append(fields, fmt.Sprintf("%q: %s", f, randValue(r)))
		}
	}
	switch r.IntN(3) {
	case 0:
		fields = append(fields, fmt.Sprintf(`"o": {"x": %s}`, randValue(r)))
	case 1:
		fields = append(fields, fmt.Sprintf(`"o": %s`, randValue(r)))
	}
	d, err := ParseDocument([]byte("{" + strings.Join(fields, ",") + "}"))
	if err != nil {
		panic(err)
	}
	return d
}

// TestIndexMatchesBruteForce is the property that makes the index trustworthy: for
// random subscriptions and random events, Match returns exactly what evaluating every
// subscription one by one returns — including after removals and replacements.
func TestIndexMatchesBruteForce(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		r := rand.New(rand.NewPCG(seed, 99))
		e := newTestEngine(t)
		ix := NewIndex(e)
		if seed%2 == 0 {
			ix.ParallelScan = 4 // exercise the parallel scan too
		}
		subs := map[string]Subscription{}
		tenants, colls := []string{"t1", "t2"}, []string{"c1", "c2"}
		for i := 0; i < 300; i++ {
			gw := fmt.Sprintf("g%d", r.IntN(6))
			id := fmt.Sprintf("s%d", r.IntN(80)) // collisions replace
			c, err := e.Compile(randCriterion(r))
			for err != nil { // e.g. doc.a > true && ... may not type-check: draw again
				c, err = e.Compile(randCriterion(r))
			}
			s := Subscription{Gateway: gw, ID: id, Tenant: tenants[r.IntN(2)], Collection: colls[r.IntN(2)], Criterion: c}
			if err := ix.Add(s); err != nil {
				t.Fatal(err)
			}
			subs[gw+"/"+id] = s
			if r.IntN(5) == 0 { // remove a random one
				for k, v := range subs {
					if !ix.Remove(v.Gateway, v.ID) {
						t.Fatalf("Remove(%s) = false", k)
					}
					delete(subs, k)
					break
				}
			}
		}
		if r.IntN(2) == 0 {
			ix.RemoveGateway("g0")
			for k, v := range subs {
				if v.Gateway == "g0" {
					delete(subs, k)
				}
			}
		}
		if ix.Len() != len(subs) {
			t.Fatalf("seed %d: Len = %d, want %d", seed, ix.Len(), len(subs))
		}
		checkRefs(t, ix)
		var out []Result
		for i := 0; i < 400; i++ {
			ev := &Event{Tenant: tenants[r.IntN(2)], Collection: colls[r.IntN(2)], ID: fmt.Sprintf("d%d", r.IntN(5)),
				Op: []Op{Create, Update, Update, Delete}[r.IntN(4)]}
			if ev.Op != Delete {
				ev.Doc = randDoc(r)
			}
			if ev.Op != Create && r.IntN(2) == 0 {
				ev.Before = randDoc(r)
			}
			out = ix.Match(ev, out[:0])
			got, want := resultStrings(out), reference(subs, ev)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d event %d %+v:\n got %v\nwant %v", seed, i, ev, got, want)
			}
		}
	}
}

func TestIndexEnterStayLeave(t *testing.T) {
	e := newTestEngine(t)
	ix := NewIndex(e)
	add := func(id string, cr Criterion) {
		c, err := e.Compile(cr)
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Add(Subscription{Gateway: "g", ID: id, Tenant: "t", Collection: "tasks", Criterion: c}); err != nil {
			t.Fatal(err)
		}
	}
	add("open", Criterion{Filters: []Filter{{Field: "status", Op: OpEqual, Value: "open"}}})
	add("cel-open", Criterion{CEL: `doc.status == "open"`})
	add("doc", Criterion{DocumentID: "t1"})
	add("all", Criterion{})
	add("other", Criterion{DocumentID: "t2"})
	open, closed := map[string]any{"status": "open"}, map[string]any{"status": "closed"}
	check := func(name string, ev Event, want ...string) {
		t.Helper()
		ev.Tenant, ev.Collection, ev.ID = "t", "tasks", "t1"
		got := resultStrings(ix.Match(&ev, nil))
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	check("enter", Event{Op: Update, Doc: open, Before: closed}, "g/open:create", "g/cel-open:create", "g/doc:update", "g/all:update")
	check("stay", Event{Op: Update, Doc: open, Before: open}, "g/open:update", "g/cel-open:update", "g/doc:update", "g/all:update")
	check("leave", Event{Op: Update, Doc: closed, Before: open}, "g/open:delete", "g/cel-open:delete", "g/doc:update", "g/all:update")
	check("no pre-image", Event{Op: Update, Doc: open}, "g/open:update", "g/cel-open:update", "g/doc:update", "g/all:update")
	check("create", Event{Op: Create, Doc: closed}, "g/doc:create", "g/all:create")
	check("delete with pre-image", Event{Op: Delete, Before: closed}, "g/doc:delete", "g/all:delete")
	check("hard delete without pre-image goes to every filter subscription",
		Event{Op: Delete}, "g/open:delete", "g/cel-open:delete", "g/doc:delete", "g/all:delete")
	if got := ix.Match(&Event{Tenant: "t2", Collection: "tasks", ID: "t1", Op: Create, Doc: open}, nil); len(got) != 0 {
		t.Errorf("another tenant's event matched %v", got)
	}
	if got := ix.Match(&Event{Tenant: "t", Collection: "other", ID: "t1", Op: Delete}, nil); len(got) != 0 {
		t.Errorf("another collection's delete matched %v", got)
	}
}

func TestIndexSharesGroups(t *testing.T) {
	e := newTestEngine(t)
	ix := NewIndex(e)
	for i := 0; i < 100; i++ {
		c, _ := e.Compile(Criterion{CEL: fmt.Sprintf("doc.n > %d", i%10)})
		ix.Add(Subscription{Gateway: fmt.Sprintf("g%d", i), ID: "s", Tenant: "t", Collection: "c", Criterion: c})
	}
	if st := ix.Stats(); st.Subscriptions != 100 || st.Groups != 10 || st.Scanned != 10 {
		t.Fatalf("stats %+v, want 100 subscriptions in 10 scanned groups", st)
	}
	before := e.Stats().CELEvals
	if got := len(ix.Match(&Event{Tenant: "t", Collection: "c", ID: "x", Op: Create, Doc: map[string]any{"n": 5.0}}, nil)); got != 50 {
		t.Fatalf("matched %d, want 50", got)
	}
	if evals := e.Stats().CELEvals - before; evals != 10 {
		t.Fatalf("%d CEL evaluations for 10 distinct expressions", evals)
	}
	for i := 0; i < 100; i++ {
		ix.Remove(fmt.Sprintf("g%d", i), "s")
	}
	if st := ix.Stats(); st != (IndexStats{}) || len(ix.scopes) != 0 || len(ix.subs) != 0 || len(ix.crits.m) != 0 {
		t.Fatalf("after removing everything: %+v, %d scopes, %d gateways, %d criteria", st, len(ix.scopes), len(ix.subs), len(ix.crits.m))
	}
}

// checkRefs checks that every subscription's reference leads to its own member, and
// that every member of every group is referenced: removal moves members around.
func checkRefs(t *testing.T, ix *Index) {
	t.Helper()
	n := 0
	for gw, gs := range ix.subs {
		if gs.name != gw || len(gs.byID) == 0 {
			t.Fatalf("gateway %q: entry named %q with %d subscriptions", gw, gs.name, len(gs.byID))
		}
		for id, ref := range gs.byID {
			if ref.pos >= len(ref.grp.members) || ref.grp.members[ref.pos] != (member{gw, id}) {
				t.Fatalf("%s/%s: reference to position %d of a group of %d", gw, id, ref.pos, len(ref.grp.members))
			}
			n++
		}
	}
	members := 0
	for _, sc := range ix.scopes {
		for _, g := range sc.groups {
			members += len(g.members)
		}
	}
	if n != members || n != ix.n {
		t.Fatalf("%d references, %d members, %d counted", n, members, ix.n)
	}
	// Every group's criterion is the shared one of its key, counted once per group
	// (the callers give each Index an Engine of its own).
	uses := map[string]int{}
	for _, sc := range ix.scopes {
		for _, g := range sc.groups {
			if sh := ix.crits.m[g.crit.key]; sh == nil || sh.c != g.crit {
				t.Fatalf("group of %s does not use the shared criterion", g.crit.key)
			}
			uses[g.crit.key]++
		}
	}
	for k, sh := range ix.crits.m {
		if sh.groups != uses[k] {
			t.Fatalf("criterion %s counts %d groups, %d use it", k, sh.groups, uses[k])
		}
	}
}

func TestIndexAddValidation(t *testing.T) {
	ix := NewIndex(nil)
	if err := ix.Add(Subscription{Gateway: "g", ID: "s"}); err == nil {
		t.Error("subscription without criterion accepted")
	}
	c, _ := newTestEngine(t).Compile(Criterion{})
	if err := ix.Add(Subscription{ID: "s", Criterion: c}); err == nil {
		t.Error("subscription without gateway accepted")
	}
}

func TestSoftDelete(t *testing.T) {
	del, live := map[string]any{"deleted": true}, map[string]any{"deleted": false}
	absent := map[string]any{"x": 1.0}
	for _, tc := range []struct {
		name   string
		ev     Event
		keep   bool
		op     Op
		before bool // pre-image kept
	}{
		{"flagged update becomes delete", Event{Op: Update, Doc: del, Changed: []string{"deleted"}}, true, Delete, false},
		{"flagged update with live pre-image", Event{Op: Update, Doc: del, Before: live}, true, Delete, true},
		{"flagged update, unknown changes", Event{Op: Update, Doc: del}, true, Delete, false},
		{"update of a soft-deleted doc is dropped", Event{Op: Update, Doc: del, Changed: []string{"x"}}, false, Update, false},
		{"update with flagged pre-image dropped", Event{Op: Update, Doc: del, Before: del}, false, Update, true},
		{"flag cleared becomes create", Event{Op: Update, Doc: live, Changed: []string{"deleted"}}, true, Create, false},
		{"flag removed becomes create", Event{Op: Update, Doc: absent, Changed: []string{"deleted"}}, true, Create, false},
		{"pre-image flagged: recreation drops it", Event{Op: Update, Doc: absent, Before: del}, true, Create, false},
		{"ordinary update untouched", Event{Op: Update, Doc: absent, Changed: []string{"x"}}, true, Update, false},
		{"flag must be exactly true", Event{Op: Update, Doc: map[string]any{"deleted": "true"}}, true, Update, false},
		{"create of flagged doc dropped", Event{Op: Create, Doc: del}, false, Create, false},
		{"delete of flagged doc dropped", Event{Op: Delete, Before: del}, false, Delete, true},
		{"hard delete kept", Event{Op: Delete}, true, Delete, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.ev
			keep := SoftDelete(&ev, "deleted")
			if keep != tc.keep || (keep && ev.Op != tc.op) || (ev.Before != nil) != tc.before {
				t.Fatalf("keep=%v op=%v before=%v; want keep=%v op=%v before=%v", keep, ev.Op, ev.Before != nil, tc.keep, tc.op, tc.before)
			}
		})
	}
	ev := Event{Op: Update, Doc: map[string]any{"removed": true}}
	if !SoftDelete(&ev, "removed") || ev.Op != Delete {
		t.Error("configured flag name ignored")
	}
	ev = Event{Op: Update, Doc: del}
	if !SoftDelete(&ev, "") || ev.Op != Update {
		t.Error("empty flag did not disable the transform")
	}
}

// Indexes of one Engine (a node's partitions) share one Compiled per criterion, and
// one Index letting go of a criterion leaves it to the others.
func TestIndexesShareCriteria(t *testing.T) {
	e := newTestEngine(t)
	a, b := NewIndex(e), NewIndex(e)
	compile := func() *Compiled {
		c, err := e.Compile(Criterion{Filters: []Filter{{Field: "room", Op: OpEqual, Value: "r1"}}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for i, ix := range []*Index{a, a, b} {
		if err := ix.Add(Subscription{Gateway: "g", ID: fmt.Sprint(i), Tenant: "t", Collection: fmt.Sprint("c", i), Criterion: compile()}); err != nil {
			t.Fatal(err)
		}
	}
	var crits []*Compiled
	for _, ix := range []*Index{a, b} {
		for _, sc := range ix.scopes {
			for _, g := range sc.groups {
				crits = append(crits, g.crit)
			}
		}
	}
	if len(crits) != 3 || crits[0] != crits[1] || crits[1] != crits[2] {
		t.Fatalf("3 groups of one criterion hold %d distinct Compiled", len(slices.Compact(crits)))
	}
	if sh := e.crits.m[crits[0].key]; sh == nil || sh.groups != 3 {
		t.Fatalf("shared criterion: %+v, want 3 groups", sh)
	}
	a.Remove("g", "0")
	a.Remove("g", "1")
	ev := &Event{Tenant: "t", Collection: "c2", ID: "d", Op: Create, Doc: map[string]any{"room": "r1"}}
	if got := resultStrings(b.Match(ev, nil)); len(got) != 1 {
		t.Fatalf("after the other index let go: %v, want the one match", got)
	}
	b.Remove("g", "2")
	if len(e.crits.m) != 0 {
		t.Fatalf("%d criteria left after every group went", len(e.crits.m))
	}
}

// TestIndexSuspendsRunawayCEL: a CEL criterion whose evaluations stop at
// the cost limit SuspendAfter times in a row, in one tenant's collection,
// is not evaluated there again (counted in Stats.CELSuspended); the same
// expression in another tenant's collection, and other criteria, go on.
func TestIndexSuspendsRunawayCEL(t *testing.T) {
	e, err := NewEngine(Config{CELCostLimit: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(e)
	var mu sync.Mutex
	var exceeded []CostExceeded
	ix.OnCostExceeded = func(ce CostExceeded) {
		mu.Lock()
		defer mu.Unlock()
		exceeded = append(exceeded, ce)
	}
	const runaway = `doc.s + doc.s + doc.s != "" || doc.small == 1`
	for _, sub := range []struct{ id, tenant, cel string }{
		{"bad", "abuser", runaway}, {"same-elsewhere", "other", runaway}, {"cheap", "abuser", `doc.small == 1`},
	} {
		c, err := e.Compile(Criterion{CEL: sub.cel})
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Add(Subscription{Gateway: "g", ID: sub.id, Tenant: sub.tenant, Collection: "c", Criterion: c}); err != nil {
			t.Fatal(err)
		}
	}
	big := map[string]any{"s": strings.Repeat("x", 100_000), "small": 1.0}
	small := map[string]any{"s": "x", "small": 1.0}
	match := func(tenant string, doc map[string]any) []string {
		return resultStrings(ix.Match(&Event{Tenant: tenant, Collection: "c", ID: "d", Op: Update, Doc: doc}, nil))
	}
	for range SuspendAfter - 1 {
		match("abuser", big)
	}
	if got := match("abuser", small); !slices.Contains(got, "g/bad:update") {
		t.Fatalf("a cheap evaluation after %d over budget: %v, want the runaway criterion to match (strikes reset)", SuspendAfter-1, got)
	}
	for range SuspendAfter {
		match("abuser", big)
	}
	if got := e.Stats().CELSuspended; got != 1 {
		t.Fatalf("CELSuspended = %d, want 1", got)
	}
	// Every evaluation over the limit was reported; the last one with the
	// subscriptions it suspended.
	mu.Lock()
	if len(exceeded) != 2*SuspendAfter-1 {
		t.Fatalf("OnCostExceeded called %d times, want %d", len(exceeded), 2*SuspendAfter-1)
	}
	last := exceeded[len(exceeded)-1]
	if last.Tenant != "abuser" || last.Collection != "c" || !slices.Equal(last.Suspended, []Member{{Gateway: "g", ID: "bad"}}) {
		t.Fatalf("last report = %+v, want the suspension of g/bad in abuser/c", last)
	}
	for _, ce := range exceeded[:len(exceeded)-1] {
		if ce.Suspended != nil {
			t.Fatalf("a report before the suspension lists subscriptions: %+v", ce)
		}
	}
	mu.Unlock()
	if got := match("abuser", small); slices.Contains(got, "g/bad:update") || !slices.Contains(got, "g/cheap:update") {
		t.Fatalf("after suspension: %v, want the cheap criterion only", got)
	}
	if got := match("other", small); !slices.Contains(got, "g/same-elsewhere:update") {
		t.Fatalf("the same expression in another tenant's collection: %v, want a match", got)
	}
}
