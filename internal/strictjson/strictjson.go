// Package strictjson decodes JSON input the way Streamer's inputs want it:
// one value, no unknown object fields, nothing after it. A misspelt field
// ({"filtrs": …}) is an error naming it, not a silently ignored key.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// Unmarshal decodes data, which must hold exactly one JSON value, into v,
// refusing object fields that v's struct types do not declare.
func Unmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("want exactly one JSON value, found more after it")
	}
	return nil
}
