package redis

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/streamerd/streamer/internal/redistest"
)

// TestKeySlotMatchesRedis: keySlot (the verifier's) agrees with CLUSTER
// KEYSLOT on keys with and without hash tags, empty tags and odd braces.
func TestKeySlotMatchesRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.WithCluster())
	keys := []string{"", "a", "stm:meta", "{}", "{}x", "x{}{y}", "{a", "a}", "}{a}", "{{a}}", "stm:{p:7}:events", "stm:{gw:é}:out"}
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("stm:{gw:g%d}:out", i), "k"+strconv.Itoa(i*7919))
	}
	for _, k := range keys {
		want, err := srv.Do("CLUSTER", "KEYSLOT", k)
		if err != nil {
			t.Fatal(err)
		}
		if got := strconv.Itoa(keySlot(k)); got != want {
			t.Errorf("keySlot(%q) = %s, CLUSTER KEYSLOT says %s", k, got, want)
		}
	}
}
