package store

import (
	"hash/fnv"
	"testing"
)

func TestPartitionOf(t *testing.T) {
	tests := []struct {
		tenant, collection string
		p                  int
	}{
		{"acme", "orders", 16}, {"", "orders", 16}, {"acme", "users", 7}, {"globex", "orders", 1}, {"t", "c", 1 << 20},
	}
	for _, tc := range tests {
		h := fnv.New32a()
		h.Write([]byte(tc.tenant + "/" + tc.collection))
		want := int(h.Sum32() % uint32(tc.p))
		if got := PartitionOf(tc.tenant, tc.collection, tc.p); got != want {
			t.Errorf("PartitionOf(%q, %q, %d) = %d, want FNV-1a mod p = %d", tc.tenant, tc.collection, tc.p, got, want)
		}
		if got := PartitionOfBytes([]byte(tc.tenant), []byte(tc.collection), tc.p); got != want {
			t.Errorf("PartitionOfBytes(%q, %q, %d) = %d, want %d", tc.tenant, tc.collection, tc.p, got, want)
		}
	}
}
