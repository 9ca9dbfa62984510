package match

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
)

// celVariants are the kinds of non-indexable CEL the benchmarks use, all evaluated
// natively: comparisons (as flat rows), a string function or a comparison, and the
// shape of the bench harness's workload, a comparison and a string function on the id.
var celVariants = []struct {
	name string
	expr func(i int) string
}{
	{"cel=comparisons", func(i int) string {
		return fmt.Sprintf(`doc.score >= %.2f && doc.score < %.2f`, float64(i%100_000)/100, float64(i%100_000)/100+1)
	}},
	{"cel=functions", func(i int) string { return fmt.Sprintf(`doc.title.startsWith("t%d") || doc.score < -%d.0`, i%1000, i) }},
	{"cel=endsWith", func(i int) string { return fmt.Sprintf(`doc.score > %d.5 && id.endsWith("%d")`, 900+i%100, i%10) }},
}

// BenchmarkMatchEqualityMillion is benchmark (a) of the match issue: 1,000,000
// subscriptions on one collection — 99% equality filters over 100,000 distinct values,
// 1% non-indexable CEL over 100 distinct expressions — and one event per iteration.
func BenchmarkMatchEqualityMillion(b *testing.B) {
	for _, variant := range celVariants {
		b.Run(variant.name, func(b *testing.B) {
			e := newTestEngine(b)
			ix := NewIndex(e)
			const subs, values = 1_000_000, 100_000
			celExprs := make([]*Compiled, 100)
			for i := range celExprs {
				c, err := e.Compile(Criterion{CEL: variant.expr(i * 10)})
				if err != nil {
					b.Fatal(err)
				}
				celExprs[i] = c
			}
			for i := 0; i < subs; i++ {
				var c *Compiled
				if i%100 == 0 {
					c = celExprs[(i/100)%len(celExprs)]
				} else {
					var err error
					c, err = e.Compile(Criterion{Filters: []Filter{{Field: "owner", Op: OpEqual, Value: fmt.Sprintf("u%d", i%values)}}})
					if err != nil {
						b.Fatal(err)
					}
				}
				ix.Add(Subscription{Gateway: fmt.Sprintf("g%d", i%16), ID: fmt.Sprint(i), Tenant: "t", Collection: "c", Criterion: c})
			}
			events := make([]*Event, 1024)
			for i := range events {
				events[i] = &Event{Tenant: "t", Collection: "c", ID: fmt.Sprint(i), Op: Update,
					Doc: map[string]any{"owner": fmt.Sprintf("u%d", (i*7919)%values), "score": float64(i % 2000), "title": fmt.Sprintf("t%d", i%2000)}}
			}
			var out []Result
			matched := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out = ix.Match(events[i%len(events)], out[:0])
				matched += len(out)
			}
			b.ReportMetric(float64(matched)/float64(b.N), "matches/event")
		})
	}
}

// BenchmarkMatchScanCEL is benchmark (b): 100,000 distinct, non-indexable CEL
// subscriptions on one collection. Run with -cpu 1,2 to see how the parallel scan
// scales with cores.
func BenchmarkMatchScanCEL(b *testing.B) {
	for _, variant := range celVariants {
		b.Run(variant.name, func(b *testing.B) {
			e, err := NewEngine(Config{CELCacheSize: 200_000})
			if err != nil {
				b.Fatal(err)
			}
			ix := NewIndex(e)
			for i := 0; i < 100_000; i++ {
				c, err := e.Compile(Criterion{CEL: variant.expr(i)})
				if err != nil {
					b.Fatal(err)
				}
				ix.Add(Subscription{Gateway: "g", ID: fmt.Sprint(i), Tenant: "t", Collection: "c", Criterion: c})
			}
			ev := &Event{Tenant: "t", Collection: "c", ID: "x", Op: Update, Doc: map[string]any{"score": 500.0, "title": "t500"}}
			var out []Result
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out = ix.Match(ev, out[:0])
			}
			b.ReportMetric(float64(len(out)), "matches/event")
		})
	}
}

// BenchmarkFilterEval is benchmark (c): one field-filter evaluation.
func BenchmarkFilterEval(b *testing.B) {
	e := newTestEngine(b)
	doc := map[string]any{"status": "open", "priority": 3.0, "owner": map[string]any{"team": "core"}, "tags": []any{"a", "b", "c"}}
	for _, tc := range []struct {
		name string
		f    Filter
	}{
		{"eq-string", Filter{Field: "status", Op: OpEqual, Value: "open"}},
		{"gt-number", Filter{Field: "priority", Op: OpGreater, Value: 2}},
		{"nested-eq", Filter{Field: "owner.team", Op: OpEqual, Value: "core"}},
		{"in-5", Filter{Field: "status", Op: OpIn, Value: []any{"a", "b", "c", "d", "open"}}},
		{"array-contains", Filter{Field: "tags", Op: OpArrayContains, Value: "c"}},
	} {
		c, err := e.Compile(Criterion{Filters: []Filter{tc.f}})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if !c.Match(doc, "") {
					b.Fatal("no match")
				}
			}
		})
	}
}

// BenchmarkIndexAddRemove is benchmark (d): add/remove throughput of typical equality
// subscriptions (about 10 subscribers per distinct value) and the heap they take.
func BenchmarkIndexAddRemove(b *testing.B) {
	e := newTestEngine(b)
	const n = 200_000
	crits := make([]*Compiled, n/10)
	for i := range crits {
		crits[i], _ = e.Compile(Criterion{Filters: []Filter{{Field: "room", Op: OpEqual, Value: fmt.Sprintf("room-%d", i)}}})
	}
	subs := make([]Subscription, n)
	for i := range subs {
		subs[i] = Subscription{Gateway: fmt.Sprintf("gateway-%d", i%64), ID: fmt.Sprintf("sub-%d", i), Tenant: "acme", Collection: "messages", Criterion: crits[i%len(crits)]}
	}
	b.Run("memory", func(b *testing.B) {
		var before, after runtime.MemStats
		for i := 0; i < b.N; i++ {
			runtime.GC()
			runtime.ReadMemStats(&before)
			ix := NewIndex(e)
			for _, s := range subs {
				ix.Add(s)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-bytes/sub")
			runtime.KeepAlive(ix)
		}
	})
	b.Run("add+remove", func(b *testing.B) {
		ix := NewIndex(e)
		for _, s := range subs {
			ix.Add(s)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			s := subs[i%n]
			ix.Remove(s.Gateway, s.ID)
			ix.Add(s)
		}
	})
}

// BenchmarkIndexHeap builds the index of the bench harness's default workload
// (4 gateways × 10,000 subscriptions over 16 collections: 90% equality filters over
// 1,000 values, 9% document ids, 1% CEL), with every string allocated apart as
// decoding a subscription allocates it, and reports the live heap it takes and what
// a full collection of it costs with the process otherwise idle. That is the marking
// every collection of a loaded node repeats.
func BenchmarkIndexHeap(b *testing.B) {
	e := newTestEngine(b)
	const gateways, perGateway, collections, values, docs = 4, 10_000, 16, 1000, 100_000
	build := func() *Index {
		ix := NewIndex(e)
		for i := range gateways * perGateway {
			h := uint64(i)*0x9E3779B97F4A7C15 + 1
			next := func() uint64 { h ^= h << 13; h ^= h >> 7; h ^= h << 17; return h }
			var crit Criterion
			switch k := next() % 100; {
			case k < 90:
				crit.Filters = []Filter{{Field: "user", Op: OpEqual, Value: fmt.Sprintf("u%d", next()%values)}}
			case k < 99:
				crit.DocumentID = fmt.Sprintf("d%d", next()%docs)
			default:
				crit.CEL = fmt.Sprintf(`doc.user == "u%d" && doc.score >= %d.0`, next()%values, next()%1000)
			}
			c, err := e.Compile(crit)
			if err != nil {
				b.Fatal(err)
			}
			if err := ix.Add(Subscription{
				Gateway: fmt.Sprintf("gateway-%d", i%gateways), ID: fmt.Sprintf("s%d", i),
				Tenant: strings.Clone("bench"), Collection: fmt.Sprintf("items%d", next()%collections), Criterion: c,
			}); err != nil {
				b.Fatal(err)
			}
		}
		return ix
	}
	heap := func() (objects, bytes, scan uint64) {
		s := []metrics.Sample{{Name: "/gc/heap/objects:objects"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/heap:bytes"}}
		runtime.GC()
		metrics.Read(s)
		return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	}
	o0, l0, s0 := heap()
	ix := build()
	o1, l1, s1 := heap()
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.StopTimer()
	const n = gateways * perGateway
	b.ReportMetric(float64(o1-o0)/n, "objects/sub")
	b.ReportMetric(float64(l1-l0)/n, "live-bytes/sub")
	b.ReportMetric(float64(s1-s0)/n, "scan-bytes/sub")
	st := ix.Stats()
	b.ReportMetric(float64(st.Groups), "groups")
	runtime.KeepAlive(ix)
}
