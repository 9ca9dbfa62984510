package strictjson

import (
	"strings"
	"testing"
)

func TestUnmarshal(t *testing.T) {
	type in struct {
		Doc     map[string]any `json:"doc"`
		Filters []any          `json:"filters"`
	}
	for _, tc := range []struct {
		data, err string
	}{
		{`{"doc":{"a":1},"filters":[]}`, ""},
		{` {"doc":{"a":{"unknown":"keys inside a map are data"}}} `, ""},
		{`{"doc":{},"filtrs":[]}`, `unknown field "filtrs"`},
		{`{"doc":{}} {"doc":{}}`, "exactly one JSON value"},
		{`{"doc":{}} x`, "exactly one JSON value"},
		{`{"doc":`, "unexpected EOF"},
		{``, "EOF"},
	} {
		var v in
		err := Unmarshal([]byte(tc.data), &v)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.data, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one containing %q", tc.data, err, tc.err)
		}
	}
}
