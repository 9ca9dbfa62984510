package memory_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/streamerd/streamer/store"
	"github.com/streamerd/streamer/store/memory"
	"github.com/streamerd/streamer/store/storetest"
)

func TestDocumentsConformance(t *testing.T) {
	storetest.RunDocuments(t, storetest.DocumentsOptions{Versions: true}, func(t *testing.T) (store.Documents, store.DocumentWriter) {
		d := memory.NewDocuments(0)
		return d, d
	})
}

// TestDocumentsBudget: a collection that would take the documents over the
// budget is dropped and refuses snapshots with the reason, the others stay;
// the budget counts what deletes and replacements free.
func TestDocumentsBudget(t *testing.T) {
	ctx := context.Background()
	d := memory.NewDocuments(4096)
	body := `{"pad":"` + strings.Repeat("x", 400) + `"}`
	for i := range 4 {
		d.Put("t", "small", store.Document{ID: fmt.Sprint(i), Data: []byte(body)})
	}
	for i := range 4 { // replacing does not grow
		d.Put("t", "small", store.Document{ID: fmt.Sprint(i), Data: []byte(body)})
	}
	before := d.Bytes()
	if before <= 4*400 || before > 4*600 {
		t.Fatalf("Bytes() = %d after 4 documents of %d bytes", before, len(body))
	}
	for i := range 10 {
		d.Put("t", "big", store.Document{ID: fmt.Sprint(i), Data: []byte(body)})
	}
	_, err := d.Query(ctx, store.DocumentQuery{Tenant: "t", Collection: "big", Limit: 100})
	if !errors.Is(err, store.ErrSnapshotUnavailable) || !strings.Contains(err.Error(), "--snapshot-memory-bytes") {
		t.Fatalf("Query of the collection over the budget: %v", err)
	}
	if d.Bytes() != before {
		t.Fatalf("Bytes() = %d after dropping the big collection, want %d", d.Bytes(), before)
	}
	page, err := d.Query(ctx, store.DocumentQuery{Tenant: "t", Collection: "small", Limit: 100})
	if err != nil || len(page.Documents) != 4 {
		t.Fatalf("the small collection: %d documents, %v", len(page.Documents), err)
	}
	for i := range 4 {
		d.Delete("t", "small", fmt.Sprint(i))
	}
	if d.Bytes() != 0 {
		t.Fatalf("Bytes() = %d with no document left", d.Bytes())
	}
	if _, err := d.Query(ctx, store.DocumentQuery{Tenant: "t", Collection: "small", Limit: 0}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("limit 0: %v", err)
	}
}
