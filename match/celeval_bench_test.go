package match

import "testing"

// BenchmarkCELEval measures one CEL evaluation against a prepared document.
func BenchmarkCELEval(b *testing.B) {
	e := newTestEngine(b)
	c, err := e.Compile(Criterion{CEL: `doc.score > 10.0 && doc.kind != "k7"`})
	if err != nil {
		b.Fatal(err)
	}
	img := image{doc: map[string]any{"score": 500.0, "kind": "k7"}, id: "x"}
	img.prepare()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c.eval(&img)
	}
}
