// Package targeting compiles the CEL rules that decide which devices an
// update, ring, deployment or hold applies to, and places devices in
// deterministic rollout buckets. Rules are type-checked and cost-estimated
// when saved and compiled once per snapshot, never per check-in.
package targeting

import (
	"fmt"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/ringmaster/ringmaster/internal/fault"
	"github.com/ringmaster/ringmaster/internal/version"
)

// Device is what a rule sees as `device`: device.id, device.attributes
// (map of string to string) and device.installed (product to version).
type Device struct {
	ID         string            `cel:"id"`
	Attributes map[string]string `cel:"attributes"`
	Installed  map[string]string `cel:"installed"`
}

// Limits on rules.
const (
	// MaxCost is the largest worst-case cost estimate a saved rule may have.
	// A typical rule costs under 50; iterating every attribute a few times
	// stays well below the limit, nested loops over them do not. The
	// estimate assumes the check-in limits, which are enforced before any
	// rule runs, so it bounds every evaluation.
	MaxCost = 20_000
	// MaxRuleLen bounds a rule's source.
	MaxRuleLen = 4096
	// Worst-case sizes the estimator assumes (the check-in limits).
	maxAttributes = 64
	maxInstalled  = 128
	maxString     = 256
)

// versionType is the CEL type of version("1.2.3") values as the checker
// sees it; at run time values report versionRuntimeType, which carries the
// comparer trait the standard <, <=, > and >= dispatch on.
var (
	versionType        = cel.OpaqueType("version")
	versionRuntimeType = types.NewObjectType("version", traits.ComparerType)
)

// versionVal is a version inside CEL.
type versionVal struct{ v version.Version }

func (v versionVal) ConvertToNative(t reflect.Type) (any, error) {
	if t.Kind() == reflect.String {
		return v.v.String(), nil
	}
	return nil, fmt.Errorf("cannot convert version to %v", t)
}
func (v versionVal) ConvertToType(t ref.Type) ref.Val {
	if t == types.StringType {
		return types.String(v.v.String())
	}
	if t == types.TypeType {
		return versionType
	}
	return types.NewErr("cannot convert version to %s", t.TypeName())
}
func (v versionVal) Equal(o ref.Val) ref.Val {
	w, ok := o.(versionVal)
	return types.Bool(ok && v.v.Compare(w.v) == 0)
}
func (v versionVal) Type() ref.Type { return versionRuntimeType }
func (v versionVal) Value() any     { return v.v }

// Compare makes versions ordered: CEL's <, <=, > and >= call it.
func (v versionVal) Compare(o ref.Val) ref.Val {
	w, ok := o.(versionVal)
	if !ok {
		return types.NewErr("cannot compare a version with %s", o.Type().TypeName())
	}
	return types.Int(v.v.Compare(w.v))
}

// Env compiles rules. It is safe for concurrent use.
type Env struct {
	env *cel.Env
}

// NewEnv returns the rule environment.
func NewEnv() (*Env, error) {
	// Declarations only: at run time the standard comparison operators call
	// versionVal.Compare.
	cmp := func(op, id string) cel.EnvOption {
		return cel.Function(op, cel.Overload(id, []*cel.Type{versionType, versionType}, cel.BoolType))
	}
	env, err := cel.NewEnv(
		ext.NativeTypes(reflect.TypeFor[Device](), ext.ParseStructTags(true)),
		cel.Variable("device", cel.ObjectType("targeting.Device")),
		cel.Function("version", cel.Overload("version_string", []*cel.Type{cel.StringType}, versionType,
			cel.UnaryBinding(func(s ref.Val) ref.Val {
				str, ok := s.(types.String)
				if !ok {
					return types.NewErr("version() needs a string")
				}
				v, err := version.Parse(string(str))
				if err != nil {
					return types.NewErr("%s", err.Error())
				}
				return versionVal{v}
			}))),
		cmp("_<_", "less_version"),
		cmp("_<=_", "less_equals_version"),
		cmp("_>_", "greater_version"),
		cmp("_>=_", "greater_equals_version"),
		ext.Strings(),
	)
	if err != nil {
		return nil, err
	}
	return &Env{env: env}, nil
}

// Rule is a compiled rule. The empty rule matches every device. Safe for
// concurrent use.
type Rule struct {
	Source string
	prg    cel.Program
	// must are equalities the rule requires (a pre-filter; see Rejects).
	must []equality
}

// Compile type-checks src, estimates its worst-case cost and compiles it.
// Errors are Invalid and say what is wrong (with the position) or how
// expensive the rule could be.
func (e *Env) Compile(src string) (*Rule, error) {
	src = strings.TrimSpace(src)
	if src == "" {
		return &Rule{}, nil
	}
	if len(src) > MaxRuleLen {
		return nil, fault.E(fault.Invalid, "rule is longer than %d bytes", MaxRuleLen)
	}
	ast, iss := e.env.Compile(src)
	if iss.Err() != nil {
		return nil, fault.E(fault.Invalid, "rule does not compile: %s", iss.Err().Error())
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fault.E(fault.Invalid, "rule must be a boolean expression, not %s", ast.OutputType())
	}
	est, err := e.env.EstimateCost(ast, sizes{})
	if err != nil {
		return nil, fault.E(fault.Invalid, "rule cost cannot be estimated: %s", err.Error())
	}
	if est.Max > MaxCost {
		return nil, fault.E(fault.Invalid, "rule is too expensive: worst-case cost %d exceeds the limit of %d (for example, avoid nested loops over device.attributes)", est.Max, MaxCost)
	}
	// No runtime cost tracking: the estimate above is a sound bound (device
	// data is size-checked before any rule sees it), and tracking would add
	// a third to every evaluation on the check-in path.
	prg, err := e.env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, fault.E(fault.Invalid, "rule cannot be compiled: %s", err.Error())
	}
	return &Rule{Source: src, prg: prg, must: necessary(ast.NativeRep().Expr())}, nil
}

// Match evaluates the rule for d. A rule that fails at run time (a missing
// map key, a bad version string) does not match; the error says why.
func (r *Rule) Match(d *Device) (bool, error) {
	if r == nil || r.prg == nil {
		return true, nil
	}
	out, _, err := r.prg.Eval(activation{d})
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("rule returned %s, not a boolean", out.Type().TypeName())
	}
	return bool(b), nil
}

// activation resolves `device` without allocating a map per evaluation.
type activation struct{ d *Device }

func (a activation) ResolveName(name string) (any, bool) {
	if name == "device" {
		return a.d, true
	}
	return nil, false
}
func (a activation) Parent() interpreter.Activation { return nil }

// sizes tells the cost estimator how large device data can be (the check-in
// limits), so loops over it get a finite worst case.
type sizes struct{}

func (sizes) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	path := n.Path()
	if len(path) < 2 || path[0] != "device" {
		return nil
	}
	var s cost.SizeEstimate
	switch path[1] {
	case "attributes":
		s = cost.RangedSizeEstimate(0, maxAttributes)
	case "installed":
		s = cost.RangedSizeEstimate(0, maxInstalled)
	case "id":
		s = cost.RangedSizeEstimate(1, 128)
	default:
		return nil
	}
	if len(path) > 2 { // keys or values of those maps: strings
		s = cost.RangedSizeEstimate(0, maxString)
	}
	return &s
}

func (sizes) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	versionArgs := false
	for _, a := range args {
		versionArgs = versionArgs || a.Type().IsExactType(versionType)
	}
	if function == "version" || versionArgs {
		return cost.NewCallEstimate(cost.RangedCostEstimate(1, 5), nil)
	}
	return nil
}
