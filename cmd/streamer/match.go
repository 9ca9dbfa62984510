package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/streamerd/streamer/internal/strictjson"
	"github.com/streamerd/streamer/match"
)

const matchSynopsis = `match [flags] < cases.jsonl

Reads JSON lines {"doc": {...}, "filters": [...]} or {"doc": {...}, "cel": "..."}
(optional "id": the document id, for CEL's id variable) and writes one line per input,
in order: {"match": true|false}, or {"error": "..."} when the document is not a JSON
object or the criterion does not compile. Processing continues after an error.
A filter is {"field": "a.b", "op": "==", "value": 1} or the triple ["a.b", "==", 1];
operators: ==, !=, <, <=, >, >=, in, not-in, array-contains, array-contains-any.
Neither filters nor cel matches every document. Blank lines are skipped.`

// maxMatchLine bounds one input line; a longer line gets an error and is skipped.
const maxMatchLine = 16 << 20

func runMatch(ctx context.Context, args []string, sio stdio) error {
	fs := newFlagSet("match", matchSynopsis, sio)
	maxCEL := fs.Int("cel-max-bytes", match.DefaultMaxCELBytes, "longest CEL expression accepted, in bytes")
	costLimit := fs.Uint64("cel-cost-limit", match.DefaultCELCostLimit, "runtime cost limit of one CEL evaluation")
	worst := fs.Uint64("cel-worst-case-limit", match.DefaultCELWorstCaseLimit, "refuse a CEL expression whose estimated cost on a document of --max-document-bytes exceeds this")
	maxDoc := fs.Int("max-document-bytes", match.DefaultMaxDocumentBytes, "largest document, in bytes: the worst case of CEL cost estimates")
	if err := parseFlagsEnv(fs, args); err != nil {
		return err
	}
	eng, err := match.NewEngine(match.Config{MaxCELBytes: *maxCEL, CELCostLimit: *costLimit,
		CELWorstCaseLimit: *worst, MaxDocumentBytes: *maxDoc})
	if err != nil {
		return err
	}
	in := bufio.NewReaderSize(sio.in, 64<<10)
	out := bufio.NewWriter(sio.out)
	for ctx.Err() == nil {
		line, tooLong, err := readLine(in, maxMatchLine)
		if len(bytes.TrimSpace(line)) > 0 || tooLong {
			var res any
			if tooLong {
				res = matchError{fmt.Sprintf("line is longer than %d bytes", maxMatchLine)}
			} else {
				res = evalMatchLine(eng, line)
			}
			enc := json.NewEncoder(out)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(res); err != nil {
				return err
			}
			if ferr := out.Flush(); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
	}
	return ctx.Err()
}

type matchError struct {
	Error string `json:"error"`
}

type matchResult struct {
	Match bool `json:"match"`
}

// evalMatchLine evaluates one input line.
func evalMatchLine(eng *match.Engine, line []byte) any {
	var in struct {
		Doc     json.RawMessage `json:"doc"`
		Filters json.RawMessage `json:"filters"`
		CEL     *string         `json:"cel"`
		ID      *string         `json:"id"`
	}
	if err := strictjson.Unmarshal(line, &in); err != nil {
		return matchError{`line is not one JSON object with "doc" and "filters", "cel" or "id": ` + err.Error()}
	}
	if in.Doc == nil {
		return matchError{`"doc" is missing`}
	}
	doc, err := match.ParseDocument(in.Doc)
	if err != nil {
		return matchError{err.Error()}
	}
	var cr match.Criterion
	if f := bytes.TrimSpace(in.Filters); len(f) > 0 && !bytes.Equal(f, []byte("null")) {
		if f[0] == '{' {
			f = append(append([]byte{'['}, f...), ']')
		}
		if err := json.Unmarshal(f, &cr.Filters); err != nil {
			return matchError{fmt.Sprintf("%v: filters: %v", match.ErrInvalidFilter, err)}
		}
		if len(cr.Filters) == 0 {
			cr.Filters = nil
		}
	}
	if in.CEL != nil {
		if *in.CEL == "" {
			return matchError{fmt.Sprintf("%v: expression is empty", match.ErrInvalidCEL)}
		}
		cr.CEL = *in.CEL
	}
	id := ""
	if in.ID != nil {
		id = *in.ID
	}
	c, err := eng.Compile(cr)
	if err != nil {
		return matchError{err.Error()}
	}
	return matchResult{c.Match(doc, id)}
}

// readLine reads one line without its newline. A line longer than max is consumed and
// reported with tooLong, its content dropped.
func readLine(r *bufio.Reader, max int) (line []byte, tooLong bool, err error) {
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > max+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), tooLong, err
	}
}
