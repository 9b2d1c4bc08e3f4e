package cli

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckFormat(t *testing.T) {
	for _, c := range []struct {
		got, want string
		formats   []string
	}{
		{"yaml", `unknown output format "yaml": want text or json`, []string{"text", "json"}},
		{"yaml", `unknown output format "yaml": want text, json or id`, []string{"text", "json", "id"}},
		{"json", "", []string{"table", "json"}},
	} {
		err := checkFormat(c.got, c.formats...)
		var ue *UsageError
		if c.want == "" {
			if err != nil {
				t.Errorf("%q of %v: %v", c.got, c.formats, err)
			}
		} else if !errors.As(err, &ue) || err.Error() != c.want {
			t.Errorf("%q of %v: %v, want the usage error %q", c.got, c.formats, err, c.want)
		}
	}
}

// A listing follows the page tokens to the end, and stops with an error
// when the server hands back the token it was given.
func TestListAll(t *testing.T) {
	pages := map[string][]int{"": {1, 2}, "b": {3}, "c": {4}}
	next := map[string]string{"": "b", "b": "c", "c": ""}
	all, err := listAll("x list", "srv:1", func(tok string) ([]int, string, error) { return pages[tok], next[tok], nil })
	if err != nil || len(all) != 4 || all[3] != 4 {
		t.Fatalf("%v, %v", all, err)
	}
	next["c"] = "c"
	if _, err := listAll("x list", "srv:1", func(tok string) ([]int, string, error) { return pages[tok], next[tok], nil }); err == nil || !strings.Contains(err.Error(), "x list: the server at srv:1 returned the page token it was given") {
		t.Fatalf("endless listing: %v", err)
	}
	boom := errors.New("boom")
	if _, err := listAll("x list", "srv:1", func(string) ([]int, string, error) { return nil, "", boom }); !errors.Is(err, boom) || err.Error() != "x list: boom" {
		t.Fatalf("failing page: %v", err)
	}
}
