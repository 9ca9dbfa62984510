package match

import (
	"errors"
	"fmt"
	"strings"
)

// parsePath splits a dotted field path into its segments. A segment may be quoted with
// backticks to contain dots or other special characters (`a.b`.c), with \` and \\ as
// escapes inside, as in Firestore. Unquoted segments must not be empty and must not
// contain ~ * / [ or ], which Firestore reserves.
func parsePath(p string) ([]string, error) {
	if p == "" {
		return nil, errors.New("field path is empty")
	}
	var segs []string
	for i := 0; i <= len(p); {
		if i < len(p) && p[i] == '`' {
			var seg strings.Builder
			j := i + 1
			closed := false
			for j < len(p) {
				c := p[j]
				if c == '\\' && j+1 < len(p) {
					seg.WriteByte(p[j+1])
					j += 2
					continue
				}
				if c == '`' {
					closed = true
					j++
					break
				}
				seg.WriteByte(c)
				j++
			}
			if !closed {
				return nil, fmt.Errorf("field path %q has an unterminated backtick", p)
			}
			if seg.Len() == 0 {
				return nil, fmt.Errorf("field path %q has an empty quoted segment", p)
			}
			segs = append(segs, seg.String())
			if j < len(p) && p[j] != '.' {
				return nil, fmt.Errorf("field path %q: expected '.' after a quoted segment at byte %d", p, j)
			}
			i = j + 1
			if j == len(p)-1 {
				return nil, fmt.Errorf("field path %q ends with '.'", p)
			}
			continue
		}
		end := strings.IndexByte(p[i:], '.')
		if end < 0 {
			end = len(p)
		} else {
			end += i
		}
		seg := p[i:end]
		if seg == "" {
			return nil, fmt.Errorf("field path %q has an empty segment (leading, trailing or double '.')", p)
		}
		if k := strings.IndexAny(seg, "~*/[]`"); k >= 0 {
			return nil, fmt.Errorf("field path %q contains %q; quote the segment with backticks to use it", p, seg[k])
		}
		segs = append(segs, seg)
		i = end + 1
	}
	return segs, nil
}

// lookup follows path through nested objects. A segment that meets a non-object (an
// array, a scalar or null) means the field is missing.
func lookup(doc map[string]any, path []string) (any, bool) {
	var cur any = doc
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}
