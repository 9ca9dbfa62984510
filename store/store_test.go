package store_test

import (
	"errors"
	"testing"

	"github.com/streamerd/streamer/store"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		in       string
		ms, seq  uint64
		wantFail bool
	}{
		{in: "0-0"},
		{in: "1526919030474-55", ms: 1526919030474, seq: 55},
		{in: "18446744073709551615-18446744073709551615", ms: 1<<64 - 1, seq: 1<<64 - 1},
		{in: "007-01", ms: 7, seq: 1},
		{in: "", wantFail: true},
		{in: "12", wantFail: true},
		{in: "1-", wantFail: true},
		{in: "-1", wantFail: true},
		{in: "+1-2", wantFail: true},
		{in: "1-+2", wantFail: true},
		{in: "1-2-3", wantFail: true},
		{in: " 1-2", wantFail: true},
		{in: "a-1", wantFail: true},
		{in: "18446744073709551616-0", wantFail: true},
		{in: "*", wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ms, seq, err := store.ParseID(tt.in)
			if tt.wantFail {
				if !errors.Is(err, store.ErrBadID) {
					t.Fatalf("ParseID(%q) = %d, %d, %v; want an error wrapping ErrBadID", tt.in, ms, seq, err)
				}
				return
			}
			if err != nil || ms != tt.ms || seq != tt.seq {
				t.Fatalf("ParseID(%q) = %d, %d, %v; want %d, %d, nil", tt.in, ms, seq, err, tt.ms, tt.seq)
			}
			if round := store.FormatID(ms, seq); store.CompareIDs(round, tt.in) != 0 {
				t.Fatalf("FormatID = %q, not equal to %q", round, tt.in)
			}
		})
	}
}

func TestCompareIDs(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want int
	}{
		{"empty equals empty", "", "", 0},
		{"empty before zero id", "", "0-0", -1},
		{"empty before malformed", "", "zzz", -1},
		{"equal", "5-3", "5-3", 0},
		{"leading zeros are equal", "05-3", "5-3", 0},
		{"ms decides first", "2-0", "1-99", 1},
		{"seq is numeric, not lexical", "1-2", "1-10", -1},
		{"ms is numeric, not lexical", "9-0", "10-0", -1},
		{"valid before malformed", "18446744073709551615-18446744073709551615", "0", -1},
		{"malformed compare as strings", "abc", "abd", -1},
		{"malformed equal", "x", "x", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := store.CompareIDs(tt.a, tt.b); got != tt.want {
				t.Errorf("CompareIDs(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := store.CompareIDs(tt.b, tt.a); got != -tt.want {
				t.Errorf("CompareIDs(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
		})
	}
}

func FuzzCompareIDs(f *testing.F) {
	for _, s := range []string{"", "0-0", "1-2", "1-10", "x", "12", "-"} {
		f.Add(s, "1-1")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, ba := store.CompareIDs(a, b), store.CompareIDs(b, a)
		if ab != -ba || ab < -1 || ab > 1 {
			t.Fatalf("CompareIDs(%q, %q) = %d but reversed = %d", a, b, ab, ba)
		}
		if ms, seq, err := store.ParseID(a); err == nil && store.CompareIDs(a, store.FormatID(ms, seq)) != 0 {
			t.Fatalf("%q does not equal its formatted form", a)
		}
	})
}
