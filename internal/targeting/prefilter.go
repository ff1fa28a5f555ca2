package targeting

import (
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
)

// equality is a necessary condition of a rule: device.attributes[Key] (or
// device.id when ID is set) must equal Value for the rule to hold.
type equality struct {
	ID    bool
	Key   string
	Value string
}

// necessary returns the equalities a rule's top-level conjunction requires:
// `device.attributes.k == "v"`, `device.attributes["k"] == "v"` and
// `device.id == "v"` (either way round) joined by &&. Anything else adds
// nothing, so the list is a sound pre-filter: if one fails, the rule is
// false (or would fail at run time, which also means no match).
func necessary(e celast.Expr) []equality {
	if e.Kind() != celast.CallKind {
		return nil
	}
	call := e.AsCall()
	args := call.Args()
	switch call.FunctionName() {
	case "_&&_":
		var out []equality
		for _, a := range args {
			out = append(out, necessary(a)...)
		}
		return out
	case "_==_":
		if len(args) != 2 {
			return nil
		}
		for _, pair := range [][2]celast.Expr{{args[0], args[1]}, {args[1], args[0]}} {
			if lit, ok := stringLiteral(pair[1]); ok {
				if eq, ok := deviceField(pair[0]); ok {
					eq.Value = lit
					return []equality{eq}
				}
			}
		}
	}
	return nil
}

func stringLiteral(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// deviceField recognises device.id, device.attributes.k and
// device.attributes["k"].
func deviceField(e celast.Expr) (equality, bool) {
	switch e.Kind() {
	case celast.SelectKind:
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			return equality{}, false
		}
		if isIdent(sel.Operand(), "device") && sel.FieldName() == "id" {
			return equality{ID: true}, true
		}
		if isAttributes(sel.Operand()) {
			return equality{Key: sel.FieldName()}, true
		}
	case celast.CallKind:
		call := e.AsCall()
		if call.FunctionName() == "_[_]" && len(call.Args()) == 2 && isAttributes(call.Args()[0]) {
			if k, ok := stringLiteral(call.Args()[1]); ok {
				return equality{Key: k}, true
			}
		}
	}
	return equality{}, false
}

func isAttributes(e celast.Expr) bool {
	if e.Kind() != celast.SelectKind {
		return false
	}
	sel := e.AsSelect()
	return !sel.IsTestOnly() && sel.FieldName() == "attributes" && isIdent(sel.Operand(), "device")
}

func isIdent(e celast.Expr, name string) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == name
}

// Rejects reports whether d certainly does not match the rule, judging only
// by the rule's necessary equalities (no CEL evaluation). False means
// "evaluate the rule to know".
func (r *Rule) Rejects(d *Device) bool {
	if r == nil {
		return false
	}
	for _, eq := range r.must {
		var have string
		var ok bool
		if eq.ID {
			have, ok = d.ID, true
		} else {
			have, ok = d.Attributes[eq.Key]
		}
		if !ok || have != eq.Value {
			return true
		}
	}
	return false
}
