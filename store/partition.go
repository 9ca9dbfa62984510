package store

// PartitionOf returns the event-log partition of a tenant's collection among
// p partitions: FNV-1a (32 bit) of tenant + "/" + collection, modulo p. Every
// event and subscription of one tenant's collection lands in the same
// partition, which orders them; the puller, the node's Publish and its
// subscriptions all place them with this function. p must be positive.
func PartitionOf(tenant, collection string, p int) int {
	h := fnvString(fnvString(fnvOffset, tenant), "/")
	return int(fnvString(h, collection) % uint32(p))
}

// PartitionOfBytes is PartitionOf of byte slices, for the decoders that
// read names in place.
func PartitionOfBytes(tenant, collection []byte, p int) int {
	h := fnvBytes(fnvString(fnvBytes(fnvOffset, tenant), "/"), collection)
	return int(h % uint32(p))
}

// FNV-1a, 32 bit (hash/fnv's New32a), without its allocation.
const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func fnvString(h uint32, s string) uint32 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * fnvPrime
	}
	return h
}

func fnvBytes(h uint32, b []byte) uint32 {
	for _, c := range b {
		h = (h ^ uint32(c)) * fnvPrime
	}
	return h
}
