package puller

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/bsontype"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/x/bsonx/bsoncore"
)

// ErrMalformedBSON is returned (wrapped) when a document is not valid BSON.
var ErrMalformedBSON = errors.New("puller: malformed BSON")

// maxDepth bounds the nesting of converted documents. MongoDB itself stores
// at most 100 levels; the bound protects the converter from hostile input.
const maxDepth = 200

// dateLayout renders BSON DateTime values: RFC 3339 with milliseconds, UTC.
const dateLayout = "2006-01-02T15:04:05.000Z07:00"

// AppendJSON appends the JSON object form of the BSON document doc to dst and
// returns the extended buffer. Keys keep their order (duplicates included).
// Values are converted as follows; the types without a plain JSON form keep
// their MongoDB Extended JSON v2 shape, with the values inside converted by
// the same rules:
//
//	double, int32, int64  JSON number (int64 digits are exact; readers
//	                      that use float64 lose precision past 2^53);
//	                      NaN, +Inf, -Inf become the strings "NaN",
//	                      "Infinity", "-Infinity" (JSON has no such numbers)
//	string, symbol        JSON string (invalid UTF-8 becomes U+FFFD)
//	document, array       JSON object, JSON array
//	ObjectId              24-digit lower-case hex string
//	DateTime              RFC 3339 string with milliseconds in UTC,
//	                      "2024-05-01T12:00:00.000Z"; outside years
//	                      0000-9999: the number of ms since the Unix epoch
//	Decimal128            string, "1.50", "NaN", "-Infinity"
//	binary (any subtype)  standard base64 string (UUIDs included)
//	bool, null            true/false, null; undefined becomes null
//	Timestamp             {"$timestamp":{"t":<seconds>,"i":<increment>}}
//	regular expression    {"$regularExpression":{"pattern":"…","options":"…"}}
//	JavaScript            {"$code":"…"}
//	JavaScript w/ scope   {"$code":"…","$scope":{…}}
//	DBPointer             {"$dbPointer":{"$ref":"<ns>","$id":"<hex>"}}
//	MinKey, MaxKey        {"$minKey":1}, {"$maxKey":1}
//
// A document that is not valid BSON, or nested deeper than 200 levels, is an
// error wrapping ErrMalformedBSON; dst is then returned unchanged.
func AppendJSON(dst []byte, doc bson.Raw) ([]byte, error) {
	out, err := appendDocument(dst, doc, false, 0)
	if err != nil {
		return dst, err
	}
	return out, nil
}

// malformed returns an error wrapping ErrMalformedBSON.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedBSON, fmt.Sprintf(format, args...))
}

// forEach calls fn for each element of the BSON document doc, in order, and
// stops at fn's first error. It checks the framing of doc and of each
// element; the values' contents are checked by whoever reads them.
func forEach(doc []byte, fn func(key []byte, v bsoncore.Value) error) error {
	if len(doc) < 5 {
		return malformed("document of %d bytes", len(doc))
	}
	n := int(int32(binary.LittleEndian.Uint32(doc)))
	if n < 5 || n > len(doc) || doc[n-1] != 0 {
		return malformed("bad document length %d", n)
	}
	rem := doc[4 : n-1]
	for len(rem) > 0 {
		t := bsontype.Type(rem[0])
		end := bytes.IndexByte(rem[1:], 0)
		if end < 0 {
			return malformed("element key is not terminated")
		}
		key := rem[1 : 1+end]
		v, r, ok := bsoncore.ReadValue(rem[end+2:], t)
		if !ok {
			return malformed("element %q of type %#x is truncated or of an unknown type", key, byte(t))
		}
		if err := fn(key, v); err != nil {
			return err
		}
		rem = r
	}
	return nil
}

// appendDocument appends doc as a JSON object, or as an array when isArray.
func appendDocument(dst []byte, doc []byte, isArray bool, depth int) ([]byte, error) {
	if depth >= maxDepth {
		return dst, malformed("nested deeper than %d levels", maxDepth)
	}
	opening, closing := byte('{'), byte('}')
	if isArray {
		opening, closing = '[', ']'
	}
	dst = append(dst, opening)
	first := true
	err := forEach(doc, func(key []byte, v bsoncore.Value) error {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		if !isArray {
			dst = appendString(dst, key)
			dst = append(dst, ':')
		}
		var err error
		dst, err = appendValue(dst, v, depth+1)
		return err
	})
	if err != nil {
		return dst, err
	}
	return append(dst, closing), nil
}

// appendValue appends the JSON form of one BSON value (see AppendJSON). It
// is one case per BSON type, kept in one switch on purpose: the JSON form of
// every type reads in one place, next to its neighbours'.
func appendValue(dst []byte, v bsoncore.Value, depth int) ([]byte, error) {
	bad := func() ([]byte, error) { return dst, malformed("bad %s value", v.Type) }
	switch v.Type {
	case bson.TypeDouble:
		f, ok := v.DoubleOK()
		if !ok {
			return bad()
		}
		return appendFloat(dst, f), nil
	case bson.TypeString, bson.TypeSymbol:
		s, ok := stringBytes(v.Data)
		if !ok {
			return bad()
		}
		return appendString(dst, s), nil
	case bson.TypeEmbeddedDocument, bson.TypeArray:
		return appendDocument(dst, v.Data, v.Type == bson.TypeArray, depth)
	case bson.TypeBinary:
		_, data, ok := v.BinaryOK()
		if !ok {
			return bad()
		}
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, data)
		return append(dst, '"'), nil
	case bson.TypeUndefined, bson.TypeNull:
		return append(dst, "null"...), nil
	case bson.TypeObjectID:
		oid, ok := v.ObjectIDOK()
		if !ok {
			return bad()
		}
		return appendObjectID(dst, oid), nil
	case bson.TypeBoolean:
		b, ok := v.BooleanOK()
		if !ok {
			return bad()
		}
		return strconv.AppendBool(dst, b), nil
	case bson.TypeDateTime:
		ms, ok := v.DateTimeOK()
		if !ok {
			return bad()
		}
		return appendDateTime(dst, ms), nil
	case bson.TypeRegex:
		pattern, options, ok := v.RegexOK()
		if !ok {
			return bad()
		}
		dst = append(dst, `{"$regularExpression":{"pattern":`...)
		dst = appendString(dst, []byte(pattern))
		dst = append(dst, `,"options":`...)
		dst = appendString(dst, []byte(options))
		return append(dst, "}}"...), nil
	case bson.TypeDBPointer:
		ns, oid, ok := v.DBPointerOK()
		if !ok {
			return bad()
		}
		dst = append(dst, `{"$dbPointer":{"$ref":`...)
		dst = appendString(dst, []byte(ns))
		dst = append(dst, `,"$id":`...)
		dst = appendObjectID(dst, oid)
		return append(dst, "}}"...), nil
	case bson.TypeJavaScript:
		code, ok := stringBytes(v.Data)
		if !ok {
			return bad()
		}
		dst = append(dst, `{"$code":`...)
		dst = appendString(dst, code)
		return append(dst, '}'), nil
	case bson.TypeCodeWithScope:
		code, scope, ok := v.CodeWithScopeOK()
		if !ok {
			return bad()
		}
		dst = append(dst, `{"$code":`...)
		dst = appendString(dst, []byte(code))
		dst = append(dst, `,"$scope":`...)
		var err error
		dst, err = appendDocument(dst, scope, false, depth)
		if err != nil {
			return dst, err
		}
		return append(dst, '}'), nil
	case bson.TypeInt32:
		i, ok := v.Int32OK()
		if !ok {
			return bad()
		}
		return strconv.AppendInt(dst, int64(i), 10), nil
	case bson.TypeTimestamp:
		t, i, ok := v.TimestampOK()
		if !ok {
			return bad()
		}
		dst = append(dst, `{"$timestamp":{"t":`...)
		dst = strconv.AppendUint(dst, uint64(t), 10)
		dst = append(dst, `,"i":`...)
		dst = strconv.AppendUint(dst, uint64(i), 10)
		return append(dst, "}}"...), nil
	case bson.TypeInt64:
		i, ok := v.Int64OK()
		if !ok {
			return bad()
		}
		return strconv.AppendInt(dst, i, 10), nil
	case bson.TypeDecimal128:
		d, ok := v.Decimal128OK()
		if !ok {
			return bad()
		}
		return appendString(dst, []byte(d.String())), nil
	case bson.TypeMinKey:
		return append(dst, `{"$minKey":1}`...), nil
	case bson.TypeMaxKey:
		return append(dst, `{"$maxKey":1}`...), nil
	}
	return dst, malformed("unknown BSON type %#x", byte(v.Type))
}

// scalarString renders a value used as a tenant, collection or document id:
// strings and symbols as they are, ObjectIds as hex, integers in decimal,
// DateTimes, Decimal128s and binaries as their JSON strings unquoted, and
// anything else as its JSON text (so {"a":1} for a compound _id, 1.5 for a
// double). Null and undefined render as "" with ok false: "no value".
func scalarString(v bsoncore.Value) (s string, ok bool, err error) {
	switch v.Type {
	case bson.TypeNull, bson.TypeUndefined:
		return "", false, nil
	case bson.TypeString, bson.TypeSymbol:
		b, ok := stringBytes(v.Data)
		if !ok {
			return "", false, malformed("bad %s value", v.Type)
		}
		if utf8.Valid(b) {
			return string(b), true, nil
		}
		return string(bytes.ToValidUTF8(b, []byte("\uFFFD"))), true, nil
	case bson.TypeObjectID:
		oid, ok := v.ObjectIDOK()
		if !ok {
			return "", false, malformed("bad %s value", v.Type)
		}
		return oid.Hex(), true, nil
	case bson.TypeInt32:
		i, ok := v.Int32OK()
		if !ok {
			return "", false, malformed("bad %s value", v.Type)
		}
		return strconv.FormatInt(int64(i), 10), true, nil
	case bson.TypeInt64:
		i, ok := v.Int64OK()
		if !ok {
			return "", false, malformed("bad %s value", v.Type)
		}
		return strconv.FormatInt(i, 10), true, nil
	case bson.TypeDecimal128:
		d, ok := v.Decimal128OK()
		if !ok {
			return "", false, malformed("bad %s value", v.Type)
		}
		return d.String(), true, nil
	case bson.TypeBinary:
		_, data, ok := v.BinaryOK()
		if !ok {
			return "", false, malformed("bad %s value", v.Type)
		}
		return base64.StdEncoding.EncodeToString(data), true, nil
	case bson.TypeDateTime:
		ms, ok := v.DateTimeOK()
		if !ok {
			return "", false, malformed("bad %s value", v.Type)
		}
		b := appendDateTime(nil, ms)
		if len(b) > 0 && b[0] == '"' {
			b = b[1 : len(b)-1]
		}
		return string(b), true, nil
	}
	b, err := appendValue(nil, v, 0)
	if err != nil {
		return "", false, err
	}
	return string(b), true, nil
}

// stringBytes returns the bytes of a BSON string value (int32 length, bytes,
// NUL), without the NUL.
func stringBytes(data []byte) ([]byte, bool) {
	if len(data) < 5 {
		return nil, false
	}
	n := int(int32(binary.LittleEndian.Uint32(data)))
	if n < 1 || 4+n > len(data) || data[4+n-1] != 0 {
		return nil, false
	}
	return data[4 : 4+n-1], true
}

func appendObjectID(dst []byte, oid primitive.ObjectID) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for _, b := range oid {
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0xF])
	}
	return append(dst, '"')
}

// appendDateTime appends ms since the Unix epoch as a quoted RFC 3339 string
// with milliseconds in UTC, or as a bare number outside years 0000-9999.
func appendDateTime(dst []byte, ms int64) []byte {
	t := time.UnixMilli(ms).UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return strconv.AppendInt(dst, ms, 10)
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, dateLayout)
	return append(dst, '"')
}

// appendFloat appends f the way encoding/json does, with NaN and the
// infinities as strings.
func appendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, U+2028 and U+2029
// escaped (as encoding/json does, minus its HTML escaping).
func appendString(dst []byte, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRune(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
