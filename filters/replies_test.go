package filters

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestReplyLiteralClasses parses every source file of the package and checks
// each policy.Reply literal: its enhanced code's class must equal its basic
// code's class (never a "451 5.x.x"), and both must be 4 or 5. A reply a
// check adds later is checked without anyone listing it. policy's own
// replies are checked the same way in policy/reply_test.go.
func TestReplyLiteralClasses(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	byName := map[string]int{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, v := range vs.Values {
				code, class, ok := replyLiteral(v)
				if !ok {
					continue
				}
				name := vs.Names[i].Name
				byName[name] = code
				if class != code/100 || (class != 4 && class != 5) {
					t.Errorf("%s: %s is %d with enhanced class %d", fset.Position(v.Pos()), name, code, class)
				}
			}
			return true
		})
	}
	// The replies the checks must have, with the class DESIGN.md §3 gives.
	for name, wantClass := range map[string]int{
		"UnknownUser": 5, "DirectoryIncomplete": 4, "DirectoryUnavailable": 4,
		"GreylistDeferred": 4, "GreylistStoreUnavailable": 4,
		"SPFFailed": 5, "SPFTempFailed": 4, "DNSBLBlocked": 5,
		"DomainUnverifiable": 4, "DomainNXSenderTempfail": 4, "DomainNXRecipientTempfail": 4,
		"HeaderViolation": 5,
	} {
		code, ok := byName[name]
		if !ok {
			t.Errorf("reply %s not found: renamed? update this test", name)
		} else if code/100 != wantClass {
			t.Errorf("%s is %d, want a %dxx", name, code, wantClass)
		}
	}
}

// replyLiteral recognises &policy.Reply{Code: 550, Enhanced: [3]int{5, 1, 1}, ...}
// (keyed or positional).
func replyLiteral(e ast.Expr) (code, class int, ok bool) {
	if u, isAddr := e.(*ast.UnaryExpr); isAddr {
		e = u.X
	}
	cl, isLit := e.(*ast.CompositeLit)
	if !isLit {
		return 0, 0, false
	}
	sel, isSel := cl.Type.(*ast.SelectorExpr)
	if !isSel || sel.Sel.Name != "Reply" || len(cl.Elts) < 2 {
		return 0, 0, false
	}
	value := func(el ast.Expr) ast.Expr {
		if kv, isKV := el.(*ast.KeyValueExpr); isKV {
			return kv.Value
		}
		return el
	}
	bl, isBasic := value(cl.Elts[0]).(*ast.BasicLit)
	enh, isEnh := value(cl.Elts[1]).(*ast.CompositeLit)
	if !isBasic || !isEnh || len(enh.Elts) != 3 {
		return 0, 0, false
	}
	cb, isClass := enh.Elts[0].(*ast.BasicLit)
	if !isClass {
		return 0, 0, false
	}
	code, _ = strconv.Atoi(bl.Value)
	class, _ = strconv.Atoi(cb.Value)
	return code, class, true
}
