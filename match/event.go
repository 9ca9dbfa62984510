package match

// Op is an event's operation, or the effective operation of a match for one
// subscription. The numbers are those of streamer.v1.Operation.
type Op uint8

// Operations. Unspecified is the zero value and never produced by Match.
const (
	Unspecified Op = 0
	Create      Op = 1 // the document entered the subscription's result
	Update      Op = 2 // the document stayed in the result and changed
	Delete      Op = 3 // the document left the result (or was deleted)
)

func (o Op) String() string {
	switch o {
	case Create:
		return "create"
	case Update:
		return "update"
	case Delete:
		return "delete"
	}
	return "unspecified"
}

// Event is a change event decoded for matching.
type Event struct {
	Tenant     string
	Collection string
	// ID is the document id.
	ID string
	// Op is Create, Update or Delete.
	Op Op
	// Doc is the document after the change; nil when absent (hard delete). It is ignored
	// for Delete events: a deleted document matches nothing.
	Doc map[string]any
	// Before is the pre-image; nil when the source has none. With a pre-image, matching
	// reports enter/stay/leave per subscription.
	Before map[string]any
	// Changed lists the paths an update set or removed; nil when unknown.
	Changed []string
}

// SoftDelete applies the soft-delete transform to ev, where flag is the top-level field
// that marks a document deleted when it is exactly true:
//   - an Update whose document is flagged becomes a Delete (or is dropped when the
//     document was flagged already: its pre-image is flagged, or the flag is not among
//     the changed fields);
//   - an Update that clears the flag (pre-image flagged, or the flag among the changed
//     fields and now false or absent) becomes a Create ("recreation"), matched on the
//     document after the change only;
//   - a Create of a flagged document, and a Delete of a document that was already
//     flagged, are dropped: subscribers never saw it.
//
// It returns false when the event must be dropped. An empty flag disables the transform.
func SoftDelete(ev *Event, flag string) bool {
	if flag == "" {
		return true
	}
	flagged := func(doc map[string]any) bool { v, ok := doc[flag].(bool); return ok && v }
	changed := func() (known, has bool) {
		if ev.Changed == nil {
			return false, false
		}
		for _, c := range ev.Changed {
			if c == flag {
				return true, true
			}
		}
		return true, false
	}
	switch ev.Op {
	case Create:
		return !flagged(ev.Doc)
	case Update:
		if flagged(ev.Doc) {
			if ev.Before != nil {
				if flagged(ev.Before) {
					return false
				}
			} else if known, has := changed(); known && !has {
				return false
			}
			// Unknown history is treated as the moment of deletion: a delete delivered
			// twice is harmless, a missed one is not.
			ev.Op = Delete
			return true
		}
		recreated := flagged(ev.Before)
		if ev.Before == nil {
			_, recreated = changed()
		}
		if recreated {
			ev.Op = Create
			ev.Before = nil
		}
		return true
	case Delete:
		return !flagged(ev.Before)
	}
	return true
}
