package match

import (
	"math"

	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// sizeCost charges CEL calls by their operands' sizes whichever overload
// they resolved to at run time, with cel-go's own formulas. cel-go applies
// them by overload id, which a call only has when the checker resolved its
// overload; document fields are dyn, so their calls fell to the default
// cost of 1: a concatenation of two 100 kB strings cost 1, and an
// expression concatenating them in a loop ran for seconds under the cost
// limit. Keyed by function, the formulas apply to dyn calls too (and give
// the same cost as cel-go's for resolved ones).
type sizeCost struct{}

func (sizeCost) CallCost(function, _ string, args []ref.Val, _ ref.Val) *uint64 {
	var n uint64
	switch {
	case len(args) == 2 && (function == operators.Add):
		switch args[0].(type) {
		case types.String, types.Bytes: // copies both operands
			n = traversal(actualSize(args[0]) + actualSize(args[1]))
		default:
			return nil // lists: O(1) in cel-go
		}
	case len(args) == 2 && (function == overloads.StartsWith || function == overloads.EndsWith):
		n = traversal(actualSize(args[1]))
	case len(args) == 2 && function == overloads.Contains:
		n = traversal(actualSize(args[0])) * traversal(actualSize(args[1]))
	case len(args) == 2 && function == overloads.Matches:
		n = uint64(math.Ceil((1+float64(actualSize(args[0])))*common.StringTraversalCostFactor)) *
			uint64(math.Ceil(float64(actualSize(args[1]))*common.RegexStringLengthCostFactor))
	case len(args) == 2 && (function == operators.Equals || function == operators.NotEquals || function == operators.Less ||
		function == operators.LessEquals || function == operators.Greater || function == operators.GreaterEquals):
		n = traversal(min(actualSize(args[0]), actualSize(args[1])))
	case len(args) == 2 && function == operators.In:
		n = actualSize(args[1])
	default:
		return nil // cel-go's own cost
	}
	return &n
}

// worstDocument gives the cost estimator the sizes of the worst document of
// maxBytes: any string or bytes value read from it is maxBytes long, any list
// or map has maxBytes/2 entries (JSON spends at least two bytes on each), and
// a dyn value, either, the larger.
type worstDocument struct{ maxBytes uint64 }

func (w worstDocument) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if path := n.Path(); len(path) == 0 || path[0] != "doc" {
		return nil
	}
	switch n.Type().Kind() {
	case types.ListKind, types.MapKind:
		return &checker.SizeEstimate{Min: 0, Max: w.maxBytes / 2}
	}
	return &checker.SizeEstimate{Min: 0, Max: w.maxBytes}
}

func (worstDocument) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// traversal is cel-go's cost of walking size bytes.
func traversal(size uint64) uint64 {
	return uint64(math.Ceil(float64(size) * common.StringTraversalCostFactor))
}

// actualSize is cel-go's size of a value: its Size for a sizer, else 1.
func actualSize(v ref.Val) uint64 {
	if sz, ok := v.(traits.Sizer); ok {
		if n, ok := sz.Size().(types.Int); ok {
			return uint64(n)
		}
	}
	return 1
}
