package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strconv"
	"testing"
)

// luaCall matches a Redis command called from Lua and its first argument.
var luaCall = regexp.MustCompile(`redis\.p?call\(\s*'([A-Za-z]+)'\s*(?:,\s*([^,)]+))?`)

// luaKeyArg is an argument that names a declared key.
var luaKeyArg = regexp.MustCompile(`^KEYS\[[^\]]+\]$`)

// luaKeyless are the commands that take no key as first argument.
var luaKeyless = map[string]bool{"TIME": true, "PING": true, "ECHO": true}

// CheckLuaKeys reads the Go file at path, finds every Lua script it passes
// to redis.NewScript (string literals and the file's string constants,
// joined with +), and fails the test for each redis.call whose key is not
// one of KEYS: on Redis Cluster a script may only touch the keys it
// declares, which the client has routed to the node of their slot. It
// returns the number of scripts found, so that the caller can check that
// the audit saw them all.
func CheckLuaKeys(t testing.TB, path string) int {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	consts := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i < len(vs.Values) {
					if v, ok := stringExpr(vs.Values[i], consts); ok {
						consts[n.Name] = v
					}
				}
			}
		}
	}
	count := 0
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 1 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || sel.Sel.Name != "NewScript" {
			return true
		}
		src, ok := stringExpr(call.Args[0], consts)
		if !ok {
			t.Errorf("%s: a script whose source is not a constant string", fset.Position(call.Pos()))
			return true
		}
		count++
		for _, m := range luaCall.FindAllStringSubmatch(src, -1) {
			cmd, arg := m[1], m[2]
			if luaKeyless[cmd] {
				continue
			}
			if !luaKeyArg.MatchString(arg) {
				t.Errorf("%s: redis.call('%s', %s): the key is not one of KEYS", fset.Position(call.Pos()), cmd, arg)
			}
		}
		return true
	})
	return count
}

// stringExpr evaluates a constant string expression: literals, known
// constants and + between them.
func stringExpr(e ast.Expr, consts map[string]string) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", false
		}
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.Ident:
		s, ok := consts[e.Name]
		return s, ok
	case *ast.ParenExpr:
		return stringExpr(e.X, consts)
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", false
		}
		a, ok1 := stringExpr(e.X, consts)
		b, ok2 := stringExpr(e.Y, consts)
		return a + b, ok1 && ok2
	}
	return "", false
}
