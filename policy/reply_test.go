package policy

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestEveryReplyLiteralHasMatchingClass parses this package's source and checks
// every Reply composite literal: the enhanced code's class must equal the basic
// code's class (the bug where a 451 carried a 5.x.x). Parsing the source means
// a reply added later is checked without anyone remembering to list it.
func TestEveryReplyLiteralHasMatchingClass(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	seen := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if id, ok := cl.Type.(*ast.Ident); !ok || id.Name != "Reply" {
				return true
			}
			if len(cl.Elts) < 2 {
				return true // Reply{Code: x, ...} built from variables
			}
			code, okCode := intLit(cl.Elts[0])
			enh, okEnh := cl.Elts[1].(*ast.CompositeLit)
			if !okCode || !okEnh || len(enh.Elts) != 3 {
				return true
			}
			class, _ := intLit(enh.Elts[0])
			seen++
			if class != code/100 {
				t.Errorf("%s: reply %d has enhanced class %d", fset.Position(cl.Pos()), code, class)
			}
			if code/100 != 2 && code/100 != 4 && code/100 != 5 {
				t.Errorf("%s: reply code %d is not 2xx/4xx/5xx", fset.Position(cl.Pos()), code)
			}
			return true
		})
	}
	if seen < 10 {
		t.Fatalf("found only %d Reply literals; the parser walk is broken", seen)
	}
}

func intLit(e ast.Expr) (int, bool) {
	if kv, ok := e.(*ast.KeyValueExpr); ok {
		e = kv.Value
	}
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.INT {
		return 0, false
	}
	n, err := strconv.Atoi(bl.Value)
	return n, err == nil
}

func TestFromErrorNeverPermanentForUnannotated(t *testing.T) {
	cases := []error{
		errors.New("boom"),
		io.ErrUnexpectedEOF,
		context.DeadlineExceeded,
		fmt.Errorf("wrapped: %w", context.DeadlineExceeded),
		context.Canceled,
		&os.PathError{Op: "write", Path: "/x", Err: errors.New("no space left on device")},
	}
	for _, err := range cases {
		r := FromError(err)
		if !r.Temporary() {
			t.Errorf("FromError(%v) = %v, want a 4xx", err, r)
		}
		if strings.Contains(r.Text, err.Error()) {
			t.Errorf("FromError(%v) leaks the internal error text: %q", err, r.Text)
		}
	}
}

func TestFromErrorKeepsAnnotatedReplies(t *testing.T) {
	wrapped := fmt.Errorf("rcpt check: %w", RelayDenied)
	if got := FromError(wrapped); got != RelayDenied {
		t.Errorf("FromError(wrapped RelayDenied) = %v", got)
	}
	se := FromError(smtp.ErrDataTooLarge)
	if se.Code != 552 || se.Enhanced != [3]int{5, 3, 4} {
		t.Errorf("go-smtp ErrDataTooLarge mapped to %v", se)
	}
	if FromError(nil) != nil {
		t.Error("FromError(nil) != nil")
	}
}

func TestFromNextHopKeepsClassAndFixesEnhanced(t *testing.T) {
	cases := []struct {
		code     int
		enh      [3]int
		wantCode int
		wantEnh  [3]int
	}{
		{550, [3]int{5, 1, 1}, 550, [3]int{5, 1, 1}},
		{451, [3]int{4, 3, 0}, 451, [3]int{4, 3, 0}},
		{451, [3]int{5, 7, 1}, 451, [3]int{4, 0, 0}}, // confused next hop
		{554, [3]int{0, 0, 0}, 554, [3]int{5, 0, 0}},
		{250, [3]int{2, 0, 0}, 451, [3]int{4, 4, 0}}, // 2xx where failure expected
		{999, [3]int{9, 9, 9}, 451, [3]int{4, 4, 0}},
	}
	for _, c := range cases {
		r := FromNextHop(c.code, c.enh, "text")
		if r.Code != c.wantCode || r.Enhanced != c.wantEnh {
			t.Errorf("FromNextHop(%d, %v) = %v, want %d %v", c.code, c.enh, r, c.wantCode, c.wantEnh)
		}
	}
}

func TestWithfKeepsCodes(t *testing.T) {
	r := TempLocal.Withf("x %d", 1)
	if r.Code != TempLocal.Code || r.Enhanced != TempLocal.Enhanced || r.Text != "x 1" {
		t.Errorf("Withf = %v", r)
	}
	if TempLocal.Text == "x 1" {
		t.Error("Withf modified the original")
	}
}
