// Package replytest finds the SMTP reply literals in a package's source, so
// that a test can check every one of them — including replies added later
// that nobody remembered to list — for the rule that the enhanced code's
// class equals the basic code's class (never a "451 5.x.x").
package replytest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Literal is one Reply composite literal: `Reply{451, [3]int{4, 3, 0}, ...}`
// or `&policy.Reply{Code: 550, Enhanced: [3]int{5, 1, 1}, ...}`.
type Literal struct {
	Name  string // the variable it is assigned to, "" if none
	Code  int
	Class int // the enhanced code's first number
	Pos   string
}

// parseSources parses the non-test .go files of the current directory; it
// fails the test if there are none (a walk that finds nothing checks
// nothing).
func parseSources(t testing.TB) (*token.FileSet, []*ast.File) {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var parsed []*ast.File
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, file)
	}
	if len(parsed) == 0 {
		t.Fatal("no Go source in the current directory: the source walk is broken")
	}
	return fset, parsed
}

// Anywhere returns the position of every Reply composite literal in the
// non-test .go files of the current directory, whatever its fields: for a
// package that must define no reply of its own.
func Anywhere(t testing.TB) []string {
	t.Helper()
	fset, files := parseSources(t)
	var out []string
	for _, file := range files {
		ast.Inspect(file, func(n ast.Node) bool {
			if cl, ok := n.(*ast.CompositeLit); ok && isReplyType(cl.Type) {
				out = append(out, fset.Position(cl.Pos()).String())
			}
			return true
		})
	}
	return out
}

// Find parses the non-test .go files of the current directory and returns
// every Reply literal whose code and class are written as numbers.
func Find(t testing.TB) []Literal {
	t.Helper()
	fset, files := parseSources(t)
	var out []Literal
	for _, file := range files {
		names := map[ast.Expr]string{}
		ast.Inspect(file, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok {
				for i, v := range vs.Values {
					if i < len(vs.Names) {
						names[unaddr(v)] = vs.Names[i].Name
					}
				}
			}
			cl, ok := n.(*ast.CompositeLit)
			if !ok || !isReplyType(cl.Type) || len(cl.Elts) < 2 {
				return true
			}
			code, okCode := intLit(cl.Elts[0])
			enh, okEnh := value(cl.Elts[1]).(*ast.CompositeLit)
			if !okCode || !okEnh || len(enh.Elts) != 3 {
				return true
			}
			class, _ := intLit(enh.Elts[0])
			out = append(out, Literal{Name: names[cl], Code: code, Class: class, Pos: fset.Position(cl.Pos()).String()})
			return true
		})
	}
	return out
}

// CheckClasses fails the test for any literal whose classes differ or are
// not 2, 4 or 5, and if fewer than min literals were found. Class 0 (no
// enhanced code) is allowed where RFC 2034 §3 lets a reply go without one:
// the greeting, the replies to HELO and EHLO, HELP, and 3xx. (A walk that
// finds nothing checks nothing.)
func CheckClasses(t testing.TB, min int) []Literal {
	t.Helper()
	lits := Find(t)
	if len(lits) < min {
		t.Fatalf("found %d reply literals, want at least %d: the source walk is broken", len(lits), min)
	}
	for _, l := range lits {
		if l.Class == 0 && (l.Code/100 == 3 || l.Code == 220 || l.Code == 250 || l.Code == 214) {
			continue
		}
		if l.Class != l.Code/100 || (l.Class != 2 && l.Class != 4 && l.Class != 5) {
			t.Errorf("%s: %s is %d with enhanced class %d", l.Pos, l.Name, l.Code, l.Class)
		}
	}
	return lits
}

func isReplyType(e ast.Expr) bool {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name == "Reply"
	case *ast.SelectorExpr:
		return t.Sel.Name == "Reply"
	}
	return false
}

func unaddr(e ast.Expr) ast.Expr {
	if u, ok := e.(*ast.UnaryExpr); ok {
		return u.X
	}
	return e
}

func value(e ast.Expr) ast.Expr {
	if kv, ok := e.(*ast.KeyValueExpr); ok {
		return kv.Value
	}
	return e
}

func intLit(e ast.Expr) (int, bool) {
	bl, ok := value(e).(*ast.BasicLit)
	if !ok || bl.Kind != token.INT {
		return 0, false
	}
	n, err := strconv.Atoi(bl.Value)
	return n, err == nil
}
