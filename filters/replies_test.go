package filters

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoReplyLiteral checks that the checks build no SMTP reply of their
// own: every reply is defined in package policy, next to its RFC, where
// policy/reply_test.go checks its classes (DESIGN.md §1: "every reply is
// built in one place"). A check picks a policy reply and may only replace
// its text (Reply.Withf).
func TestNoReplyLiteral(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	parsed := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed++
		ast.Inspect(file, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if sel, ok := cl.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Reply" {
				if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "policy" {
					t.Errorf("%s: a policy.Reply literal in package filters: define the reply in policy/replies.go", fset.Position(cl.Pos()))
				}
			}
			return true
		})
	}
	if parsed < 5 {
		t.Fatalf("parsed %d files: the source walk is broken", parsed)
	}
}
