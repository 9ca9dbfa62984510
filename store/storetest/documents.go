package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/streamerd/streamer/store"
)

// DocumentsOptions tells RunDocuments what the source under test knows.
type DocumentsOptions struct {
	// Versions: the source knows each document's last event id and
	// timestamp (a source maintained from the event log does; a database
	// does not).
	Versions bool
}

// RunDocuments is the conformance suite of store.Documents. newSource
// returns an empty source and the writer that fills it (for a source
// maintained from the event log, its DocumentWriter; for a database, one
// that writes the database). A source may return documents with more
// fields than were written (a database's id and tenant fields), never
// fewer.
func RunDocuments(t *testing.T, opts DocumentsOptions, newSource func(t *testing.T) (store.Documents, store.DocumentWriter)) {
	ctx := context.Background()
	doc := func(id, body string) store.Document {
		return store.Document{ID: id, Data: []byte(body), TimestampMs: 1700000000000, EventID: "e-" + id}
	}
	query := func(t *testing.T, src store.Documents, q store.DocumentQuery) store.DocumentPage {
		t.Helper()
		page, err := src.Query(ctx, q)
		if err != nil {
			t.Fatalf("Query(%+v): %v", q, err)
		}
		return page
	}
	ids := func(p store.DocumentPage) string {
		s := make([]string, len(p.Documents))
		for i, d := range p.Documents {
			s[i] = d.ID
		}
		if p.More != (p.Next != "") {
			return fmt.Sprintf("more=%v but next=%q", p.More, p.Next)
		}
		return strings.Join(s, ",") + fmt.Sprintf(" more=%v", p.More)
	}
	fillAs := func(w store.DocumentWriter, tenant, coll, prefix string, n int) {
		for i := n - 1; i >= 0; i-- { // written out of id order
			w.Put(tenant, coll, doc(fmt.Sprintf("%s%02d", prefix, i), fmt.Sprintf(`{"n":%d}`, i)))
		}
	}
	fill := func(w store.DocumentWriter, tenant, coll string, n int) { fillAs(w, tenant, coll, "d", n) }

	t.Run("empty collection", func(t *testing.T) {
		src, _ := newSource(t)
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 10})); got != " more=false" {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("pages in id order", func(t *testing.T) {
		src, w := newSource(t)
		fill(w, "t", "c", 5)
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 10})); got != "d00,d01,d02,d03,d04 more=false" {
			t.Fatalf("all: %s", got)
		}
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 2})); got != "d00,d01 more=true" {
			t.Fatalf("first page: %s", got)
		}
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 2, After: "d01"})); got != "d02,d03 more=true" {
			t.Fatalf("second page: %s", got)
		}
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 2, After: "d03"})); got != "d04 more=false" {
			t.Fatalf("last page: %s", got)
		}
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 2, After: "d015"})); got != "d02,d03 more=true" {
			t.Fatalf("after an id between two: %s", got)
		}
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 5})); got != "d00,d01,d02,d03,d04 more=false" {
			t.Fatalf("limit equal to the count: %s", got)
		}
	})
	t.Run("latest version, deletes", func(t *testing.T) {
		src, w := newSource(t)
		fill(w, "t", "c", 3)
		w.Put("t", "c", doc("d01", `{"n":100}`))
		w.Delete("t", "c", "d00")
		w.Delete("t", "c", "never-there")
		page := query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 10})
		if got := ids(page); got != "d01,d02 more=false" {
			t.Fatalf("got %s", got)
		}
		d := page.Documents[0]
		var got map[string]any
		if err := json.Unmarshal(d.Data, &got); err != nil || got["n"] != 100.0 {
			t.Fatalf("d01 = %s (%v)", d.Data, err)
		}
		if opts.Versions && (d.EventID != "e-d01" || d.TimestampMs != 1700000000000) {
			t.Fatalf("d01 = %+v, want its event id and timestamp", d)
		}
		w.Put("t", "c", doc("d00", `{"n":0}`)) // recreated
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 10})); got != "d00,d01,d02 more=false" {
			t.Fatalf("after recreating: %s", got)
		}
	})
	t.Run("keep selects and the limit counts kept documents", func(t *testing.T) {
		src, w := newSource(t)
		fill(w, "t", "c", 10)
		even := func(_ string, data []byte) bool {
			var d struct{ N int }
			if err := json.Unmarshal(data, &d); err != nil {
				t.Errorf("document %s: %v", data, err)
			}
			return d.N%2 == 0
		}
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 3, Keep: even})); got != "d00,d02,d04 more=true" {
			t.Fatalf("got %s", got)
		}
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 3, Keep: even, After: "d04"})); got != "d06,d08 more=false" {
			t.Fatalf("next page: %s", got)
		}
	})
	t.Run("paging with Next returns every document once", func(t *testing.T) {
		src, w := newSource(t)
		fill(w, "t", "c", 23)
		var all []string
		after := ""
		for range 10 {
			page := query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 5, After: after})
			for _, d := range page.Documents {
				all = append(all, d.ID)
			}
			if !page.More {
				break
			}
			after = page.Next
		}
		if len(all) != 23 || all[0] != "d00" || all[22] != "d22" {
			t.Fatalf("paged through %v", all)
		}
	})
	t.Run("document id", func(t *testing.T) {
		src, w := newSource(t)
		fill(w, "t", "c", 3)
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", DocumentID: "d01", Limit: 10})); got != "d01 more=false" {
			t.Fatalf("got %s", got)
		}
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", DocumentID: "zz", Limit: 10})); got != " more=false" {
			t.Fatalf("absent: %s", got)
		}
		none := func(string, []byte) bool { return false }
		if got := ids(query(t, src, store.DocumentQuery{Tenant: "t", Collection: "c", DocumentID: "d01", Keep: none, Limit: 10})); got != " more=false" {
			t.Fatalf("not kept: %s", got)
		}
	})
	t.Run("tenants and collections are apart", func(t *testing.T) {
		// Ids differ between tenants of a collection: a database keeps
		// one document per id and collection, whatever its tenant field.
		src, w := newSource(t)
		fillAs(w, "t1", "c", "a", 2)
		fillAs(w, "t2", "c", "b", 3)
		fill(w, "t1", "other", 4)
		w.Delete("t2", "c", "b00")
		w.Delete("t1", "c", "b01") // another tenant's document: not deleted
		for _, c := range []struct{ tenant, coll, want string }{
			{"t1", "c", "a00,a01 more=false"}, {"t2", "c", "b01,b02 more=false"}, {"t1", "other", "d00,d01,d02,d03 more=false"}, {"t3", "c", " more=false"},
		} {
			if got := ids(query(t, src, store.DocumentQuery{Tenant: c.tenant, Collection: c.coll, Limit: 10})); got != c.want {
				t.Errorf("%s/%s: %s, want %s", c.tenant, c.coll, got, c.want)
			}
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		src, w := newSource(t)
		fill(w, "t", "c", 2)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := src.Query(cctx, store.DocumentQuery{Tenant: "t", Collection: "c", Limit: 10}); err == nil {
			t.Fatal("Query with a cancelled context succeeded")
		}
	})
}
