package match

import "testing"

// BenchmarkCELEval measures one CEL evaluation against a prepared document.
func BenchmarkCELEval(b *testing.B) {
	for _, tc := range []struct{ name, expr string }{
		{"comparisons", `doc.score > 10.0 && doc.kind != "k7"`},
		{"endsWith", `doc.score > 10.0 && id.endsWith("3")`},
		{"startsWith-not", `doc.kind.startsWith("k") && !doc.kind.contains("8")`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := newTestEngine(b)
			c, err := e.Compile(Criterion{CEL: tc.expr})
			if err != nil {
				b.Fatal(err)
			}
			img := image{doc: map[string]any{"score": 500.0, "kind": "k7"}, id: "x13"}
			img.prepare()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				c.eval(&img)
			}
		})
	}
}
