package match

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrNotObject is returned by [ParseDocument] for JSON that is valid but not an object.
var ErrNotObject = errors.New("match: document is not a JSON object")

// maxJSONDepth is the deepest nesting of arrays and objects ParseDocument accepts,
// encoding/json's limit.
const maxJSONDepth = 10000

// ParseDocument decodes a JSON object into the representation every evaluator in this
// package works on: map[string]any, []any, float64, string, bool and nil.
//
// The result is exactly what encoding/json's Unmarshal into an any gives, and the
// input is rejected exactly when Unmarshal rejects it: numbers are parsed by
// strconv.ParseFloat (one out of float64's range is an error), invalid UTF-8 and
// unpaired surrogate escapes in strings become U+FFFD, the last of duplicate keys
// wins, nesting deeper than 10,000 is an error. Input that is valid JSON but not an
// object gives an error wrapping [ErrNotObject]; any other error says the document is
// not valid JSON.
//
// The strings of the result share one copy of data, so that retaining any of them
// retains it all.
func ParseDocument(data []byte) (map[string]any, error) {
	return ParseDocumentInto(nil, data)
}

// ParseDocumentInto is [ParseDocument] decoding the top-level object into dst, which
// it clears first, instead of a new map (nil dst: a new map). It returns the map the
// document went into. A caller that parses a document per event and lets go of each
// before the next saves the top-level map and its growth. On an error dst's contents
// are unspecified.
func ParseDocumentInto(dst map[string]any, data []byte) (map[string]any, error) {
	p := jsonParser{s: string(data)}
	if dst != nil {
		clear(dst)
		if p.skipSpace(); p.i < len(p.s) && p.s[p.i] == '{' {
			p.top = dst
		}
	}
	v, ok := p.value()
	if ok {
		p.skipSpace()
		if p.i < len(p.s) {
			ok = p.fail("after the top-level value")
		}
	}
	if !ok {
		return nil, p.err
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		return nil, fmt.Errorf("%w (got %s)", ErrNotObject, classOf(v))
	}
	return m, nil
}

// jsonParser is a recursive-descent JSON parser; its depth is bounded by maxJSONDepth.
type jsonParser struct {
	s     string
	i     int // the next byte to read
	depth int
	err   error
	top   map[string]any // the map for the top-level object, if given
}

// fail records a syntax error at the current position and returns false.
func (p *jsonParser) fail(context string) bool {
	if p.i >= len(p.s) {
		p.err = errors.New("match: document is not valid JSON: unexpected end of input")
	} else {
		p.err = fmt.Errorf("match: document is not valid JSON: invalid character %q %s at byte %d", p.s[p.i], context, p.i)
	}
	return false
}

func (p *jsonParser) skipSpace() {
	for p.i < len(p.s) {
		if c := p.s[p.i]; c > ' ' || c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return
		}
		p.i++
	}
}

// value parses the value starting at the next non-space byte.
func (p *jsonParser) value() (any, bool) {
	p.skipSpace()
	if p.i >= len(p.s) {
		return nil, p.fail("")
	}
	switch c := p.s[p.i]; c {
	case '{':
		return p.object()
	case '[':
		return p.array()
	case '"':
		s, ok := p.str()
		return s, ok
	case 't':
		return true, p.literal("true")
	case 'f':
		return false, p.literal("false")
	case 'n':
		return nil, p.literal("null")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			return p.number()
		}
	}
	return nil, p.fail("looking for beginning of value")
}

func (p *jsonParser) literal(lit string) bool {
	for j := 0; j < len(lit); j++ {
		if p.i >= len(p.s) || p.s[p.i] != lit[j] {
			return p.fail("in literal " + lit)
		}
		p.i++
	}
	return true
}

func (p *jsonParser) object() (any, bool) {
	if p.depth++; p.depth > maxJSONDepth {
		return nil, p.fail("exceeding the maximum nesting depth")
	}
	p.i++ // {
	m := p.top
	if m == nil {
		m = make(map[string]any)
	}
	p.top = nil
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		p.depth--
		return m, true
	}
	for {
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return nil, p.fail("looking for beginning of object key string")
		}
		k, ok := p.str()
		if !ok {
			return nil, false
		}
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, p.fail("after object key")
		}
		p.i++
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		m[k] = v // the last of duplicate keys wins
		if !p.next('}') {
			return nil, false
		}
		if p.s[p.i-1] == '}' {
			p.depth--
			return m, true
		}
	}
}

func (p *jsonParser) array() (any, bool) {
	if p.depth++; p.depth > maxJSONDepth {
		return nil, p.fail("exceeding the maximum nesting depth")
	}
	p.i++ // [
	a := []any{}
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		p.depth--
		return a, true
	}
	for {
		v, ok := p.value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
		if !p.next(']') {
			return nil, false
		}
		if p.s[p.i-1] == ']' {
			p.depth--
			return a, true
		}
	}
}

// next consumes the comma or the closing byte that must follow an element.
func (p *jsonParser) next(closing byte) bool {
	p.skipSpace()
	if p.i < len(p.s) && (p.s[p.i] == ',' || p.s[p.i] == closing) {
		p.i++
		return true
	}
	if closing == '}' {
		return p.fail("after object key:value pair")
	}
	return p.fail("after array element")
}

// str parses a string. Without escapes or invalid UTF-8 it is a substring of the
// document.
func (p *jsonParser) str() (string, bool) {
	start := p.i + 1
	for i := start; i < len(p.s); {
		switch c := p.s[i]; {
		case c == '"':
			p.i = i + 1
			return p.s[start:i], true
		case c == '\\':
			return p.unquote(start, i)
		case c < ' ':
			p.i = i
			return "", p.fail("in string literal")
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(p.s[i:])
			if r == utf8.RuneError && size == 1 {
				return p.unquote(start, i)
			}
			i += size
		}
	}
	p.i = len(p.s)
	return "", p.fail("")
}

// unquote parses a string from start, whose bytes up to i need no unquoting, as
// encoding/json does: escapes are decoded, a \u escape of a surrogate not followed by
// the escape of its pair and invalid UTF-8 become U+FFFD.
func (p *jsonParser) unquote(start, i int) (string, bool) {
	s := p.s
	b := make([]byte, i-start, i-start+16)
	copy(b, s[start:i])
	for i < len(s) {
		switch c := s[i]; {
		case c == '"':
			p.i = i + 1
			return string(b), true
		case c == '\\':
			if i+1 >= len(s) {
				p.i = len(s)
				return "", p.fail("")
			}
			switch s[i+1] {
			case '"', '\\', '/':
				b = append(b, s[i+1])
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(s, i+2)
				if r < 0 {
					p.i = i
					return "", p.fail("starting an invalid \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
						r2 = hex4(s, i+2) // if invalid, the next iteration reports it
					}
					if dec := utf16.DecodeRune(r, r2); dec != unicode.ReplacementChar {
						b = utf8.AppendRune(b, dec)
						i += 6
						continue
					}
					r = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, r)
				continue
			default:
				p.i = i + 1
				return "", p.fail("in string escape code")
			}
			i += 2
		case c < ' ':
			p.i = i
			return "", p.fail("in string literal")
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			b = utf8.AppendRune(b, r)
			i += size
		}
	}
	p.i = len(s)
	return "", p.fail("")
}

// hex4 decodes the 4 hexadecimal digits at s[i:], or returns -1.
func hex4(s string, i int) rune {
	if i+4 > len(s) {
		return -1
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		d := hex4digit(c)
		if d < 0 {
			return -1
		}
		r = r<<4 | d
	}
	return r
}

func hex4digit(c byte) rune {
	switch {
	case '0' <= c && c <= '9':
		return rune(c - '0')
	case 'a' <= c && c <= 'f':
		return rune(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// number parses a number, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, into the
// float64 strconv.ParseFloat gives, as encoding/json does.
func (p *jsonParser) number() (any, bool) {
	s, start := p.s, p.i
	neg := s[p.i] == '-'
	if neg {
		p.i++
	}
	// The value is mant × 10^exp as long as mant has at most 15 digits.
	var mant uint64
	i, nd, exp := p.i, 0, 0
	if i < len(s) && s[i] == '0' {
		i++
	} else {
		for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
			mant = mant*10 + uint64(s[i]-'0')
			nd++
		}
		if nd == 0 {
			p.i = i
			return nil, p.fail("in numeric literal")
		}
	}
	if i < len(s) && s[i] == '.' {
		i++
		from := i
		for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
			mant = mant*10 + uint64(s[i]-'0')
		}
		if i == from {
			p.i = i
			return nil, p.fail("after decimal point in numeric literal")
		}
		nd += i - from
		exp = from - i
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		esign := 1
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			if s[i] == '-' {
				esign = -1
			}
			i++
		}
		from, e := i, 0
		for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
			if e < 1000 { // the fast path needs |exp| <= 22; ParseFloat does the rest
				e = e*10 + int(s[i]-'0')
			}
		}
		if i == from {
			p.i = i
			return nil, p.fail("in exponent of numeric literal")
		}
		exp += esign * e
	}
	p.i = i
	// With at most 15 digits, mant is exact in a float64, and so is 10^|exp| up to
	// 10^22: one multiplication or division rounds correctly, to ParseFloat's result.
	if nd <= 15 && -22 <= exp && exp <= 22 {
		f := float64(mant)
		if exp > 0 {
			f *= float64pow10[exp]
		} else if exp < 0 {
			f /= float64pow10[-exp]
		}
		if neg {
			f = -f // -0 too
		}
		return f, true
	}
	lit := s[start:i]
	if nd > 15 && exp == 0 && !strings.ContainsAny(lit, ".eE") {
		// An integer: beyond 2^53 a float64 may round it, so one that fits
		// an int64 keeps its exact value (exactInt).
		if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return exactInt(n), true
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		p.err = fmt.Errorf("match: document is not valid JSON: number %s at byte %d is out of range", lit, start)
		return nil, false
	}
	return f, true
}

var float64pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}
