//go:build ignore

// Command doc-citations checks that every citation of the project's docs in
// the repository's files names a section that exists:
//
//	docs/protocol.md §4.3, docs/protocol.md §4.3 rule 1, docs/protocol.md §13 input 7,
//	docs/design.md §2, docs/design.md §2 step 4, docs/style.md rule 3
//
// and, with -strict, that no file still cites the documents the docs
// replaced ("notes §X", "DESIGN §X", "STYLE rule N", "PROTOCOL-NOTES",
// "shared/tr069/..."). With -fix it first rewrites those old citations into
// the new form (the section numbers are the same), then checks.
//
//	go run scripts/doc-citations.go [-fix] [-strict]
//
// It reads the files git tracks, skipping docs/, third_party/ and binary
// files, and exits 1 when a citation is broken or, with -strict, left over.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// sep is what may stand between a document's name and its section when a
// comment wraps: white space and a comment marker.
const sep = `(\s*(?://|#|\*)?\s*)`

// rewrites turn old citations into new ones, in order.
var rewrites = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`shared/tr069/PROTOCOL-NOTES\.md`), "docs/protocol.md"},
	{regexp.MustCompile(`\.\./shared/DESIGN\.md`), "docs/design.md"},
	{regexp.MustCompile(`\.\./shared/STYLE\.md`), "docs/style.md"},
	{regexp.MustCompile(`PROTOCOL-NOTES section (\d)`), "docs/protocol.md §$1"},
	{regexp.MustCompile(`PROTOCOL-NOTES(?:\.md)?` + sep + `§`), "docs/protocol.md$1§"},
	{regexp.MustCompile(`\bnotes` + sep + `§`), "docs/protocol.md$1§"},
	{regexp.MustCompile(`\bDESIGN` + sep + `§`), "docs/design.md$1§"},
	// DESIGN has no subsections: "§2.5" meant step 5 of §2.
	{regexp.MustCompile(`docs/design\.md` + sep + `§(\d+)\.(\d+)`), "docs/design.md$1§$2 step $3"},
	{regexp.MustCompile(`\bSTYLE` + sep + `rule`), "docs/style.md${1}rule"},
	{regexp.MustCompile(`\(STYLE: golden`), "(docs/style.md rule 2: golden"},
	{regexp.MustCompile(`\bnotes' skeleton`), "example of docs/protocol.md §2.1"},
}

// leftovers are old citations that -strict reports.
// (shared/tr069 itself stays: it is where the generator of cpesim's data
// models finds the BBF XML.)
var leftovers = regexp.MustCompile(`\bnotes` + sep + `§|\bDESIGN` + sep + `§|\bSTYLE` + sep + `rule|\(STYLE:|PROTOCOL-NOTES|\.\./shared/(?:DESIGN|STYLE)`)

// citation is a reference to one of the docs; chained finds further
// sections cited right after it ("docs/protocol.md §2.1, §13 output 3").
var (
	citation = regexp.MustCompile(`docs/(design|protocol|style)\.md` + sep +
		`(?:§\s*(\d+(?:\.\d+)?)(?:,?` + sep + `(rule|rules|step|steps|input|output)\s+(\d+))?|(rule)\s+(\d+))`)
	chained = regexp.MustCompile(`^(?:\s*(?:,|;|and|or)` + sep + `)§\s*(\d+(?:\.\d+)?)(?:,?` + sep + `(rule|rules|step|steps|input|output)\s+(\d+))?`)
)

// doc is what a document offers to cite: its sections, and the numbered
// items of each section ("4.3" -> {1..8}; for §13 the input and output
// lists apart, as "13 input" and "13 output").
type doc struct {
	sections map[string]bool
	items    map[string]map[int]bool
}

var (
	heading  = regexp.MustCompile(`^#{2,3} (\d+(?:\.\d+)?)\.? `)
	listItem = regexp.MustCompile(`^(\d+)\. `)
	ruleItem = regexp.MustCompile(`^(\d+)\. \*\*`)
)

func readDoc(path string) (*doc, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d := &doc{sections: map[string]bool{}, items: map[string]map[int]bool{}}
	current, list := "", ""
	for _, line := range strings.Split(string(b), "\n") {
		if m := heading.FindStringSubmatch(line); m != nil {
			current, list = m[1], m[1]
			d.sections[current] = true
			if i := strings.IndexByte(current, '.'); i > 0 {
				d.sections[current[:i]] = true
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "Input"):
			list = current + " input"
		case strings.HasPrefix(line, "Output"):
			list = current + " output"
		}
		if m := listItem.FindStringSubmatch(line); m != nil && current != "" {
			n, _ := strconv.Atoi(m[1])
			if d.items[list] == nil {
				d.items[list] = map[int]bool{}
			}
			d.items[list][n] = true
		}
		if m := ruleItem.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			if d.items["rule"] == nil {
				d.items["rule"] = map[int]bool{}
			}
			d.items["rule"][n] = true
		}
	}
	return d, nil
}

// check returns what is wrong with one cited section (and item).
func (d *doc) check(name, section, kind, item string) string {
	if kind == "rule" && section == "" {
		n, _ := strconv.Atoi(item)
		if !d.items["rule"][n] {
			return fmt.Sprintf("docs/%s.md has no rule %s", name, item)
		}
		return ""
	}
	if !d.sections[section] {
		return fmt.Sprintf("docs/%s.md has no §%s", name, section)
	}
	if kind == "" {
		return ""
	}
	list := section
	switch strings.TrimSuffix(kind, "s") {
	case "input", "output":
		list = section + " " + kind
	}
	n, _ := strconv.Atoi(item)
	if !d.items[list][n] {
		return fmt.Sprintf("docs/%s.md §%s has no %s %s", name, section, kind, item)
	}
	return ""
}

func main() {
	fix := flag.Bool("fix", false, "rewrite old citations into docs/ citations first")
	strict := flag.Bool("strict", false, "also fail on old citations left in the files")
	flag.Parse()
	docs := map[string]*doc{}
	for _, name := range []string{"design", "protocol", "style"} {
		d, err := readDoc("docs/" + name + ".md")
		if err != nil {
			fmt.Fprintln(os.Stderr, "doc-citations:", err)
			os.Exit(2)
		}
		docs[name] = d
	}
	out, err := exec.Command("git", "ls-files").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "doc-citations: git ls-files:", err)
		os.Exit(2)
	}
	var problems []string
	cited, changed := 0, 0
	for _, path := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(path, "docs/") || strings.HasPrefix(path, "third_party/") || path == "scripts/doc-citations.go" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil || bytes.IndexByte(b, 0) >= 0 {
			continue // gone, or binary
		}
		text := string(b)
		if *fix {
			orig := text
			for _, r := range rewrites {
				text = r.re.ReplaceAllString(text, r.repl)
			}
			if text != orig {
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					fmt.Fprintln(os.Stderr, "doc-citations:", err)
					os.Exit(2)
				}
				changed++
			}
		}
		lineOf := func(off int) int { return strings.Count(text[:off], "\n") + 1 }
		for _, m := range citation.FindAllStringSubmatchIndex(text, -1) {
			get := func(i int) string {
				if m[2*i] < 0 {
					return ""
				}
				return text[m[2*i]:m[2*i+1]]
			}
			name := get(1)
			cited++
			var p string
			if get(7) == "rule" {
				p = docs[name].check(name, "", "rule", get(8))
			} else {
				p = docs[name].check(name, get(3), get(5), get(6))
			}
			if p != "" {
				problems = append(problems, fmt.Sprintf("%s:%d: %s", path, lineOf(m[0]), p))
			}
			// Sections cited right after, in the same document.
			rest := m[1]
			for {
				c := chained.FindStringSubmatchIndex(text[rest:])
				if c == nil {
					break
				}
				g := func(i int) string {
					if c[2*i] < 0 {
						return ""
					}
					return text[rest+c[2*i] : rest+c[2*i+1]]
				}
				cited++
				if p := docs[name].check(name, g(2), g(4), g(5)); p != "" && get(7) != "rule" {
					problems = append(problems, fmt.Sprintf("%s:%d: %s", path, lineOf(rest), p))
				}
				rest += c[1]
			}
		}
		if *strict {
			for _, m := range leftovers.FindAllStringIndex(text, -1) {
				problems = append(problems, fmt.Sprintf("%s:%d: old citation %q", path, lineOf(m[0]), strings.Join(strings.Fields(text[m[0]:m[1]]), " ")))
			}
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		fmt.Println(p)
	}
	fmt.Fprintf(os.Stderr, "doc-citations: %d citations checked, %d files rewritten, %d problems\n", cited, changed, len(problems))
	if len(problems) > 0 {
		os.Exit(1)
	}
}
