package provisioning

import (
	"fmt"
	"strings"
	"text/template/parse"
)

// A value template is text with actions of two kinds only: a device field
// ({{.SerialNumber}}, {{.OUI}}, {{.ProductClass}}, {{.Manufacturer}},
// {{.DeviceID}}) and a per-device secret ({{secret "wifi-psk"}}). It is
// parsed with text/template's parser, then checked node by node: no
// conditions, loops, variables or other functions, so no preset runs code.

// part is one piece of a compiled template: text, a field or a secret.
type part struct {
	text, field, secret string
}

// Template is a compiled value template.
type Template struct {
	parts []part
}

var templateFields = map[string]bool{"SerialNumber": true, "OUI": true, "ProductClass": true, "Manufacturer": true, "DeviceID": true}

// ParseTemplate compiles a value template.
func ParseTemplate(s string) (Template, error) {
	if !strings.Contains(s, "{{") {
		return Template{parts: []part{{text: s}}}, nil
	}
	trees, err := parse.Parse("value", s, "{{", "}}", map[string]any{"secret": true})
	if err != nil {
		return Template{}, fmt.Errorf("template: %v", err)
	}
	if len(trees) != 1 {
		return Template{}, fmt.Errorf("template: define and block are not allowed")
	}
	var t Template
	for _, n := range trees["value"].Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
			t.parts = append(t.parts, part{text: string(n.Text)})
		case *parse.ActionNode:
			p, err := action(n)
			if err != nil {
				return Template{}, fmt.Errorf("template: %s: %v", n, err)
			}
			t.parts = append(t.parts, p)
		default:
			return Template{}, fmt.Errorf("template: %s: only {{.Field}} and {{secret \"NAME\"}} are allowed", n)
		}
	}
	return t, nil
}

func action(n *parse.ActionNode) (part, error) {
	if len(n.Pipe.Decl) > 0 || len(n.Pipe.Cmds) != 1 {
		return part{}, fmt.Errorf("only {{.Field}} and {{secret \"NAME\"}} are allowed")
	}
	args := n.Pipe.Cmds[0].Args
	switch {
	case len(args) == 1:
		f, ok := args[0].(*parse.FieldNode)
		if !ok || len(f.Ident) != 1 || !templateFields[f.Ident[0]] {
			return part{}, fmt.Errorf("unknown field (want .SerialNumber, .OUI, .ProductClass, .Manufacturer or .DeviceID)")
		}
		return part{field: f.Ident[0]}, nil
	case len(args) == 2:
		id, ok := args[0].(*parse.IdentifierNode)
		s, ok2 := args[1].(*parse.StringNode)
		if !ok || !ok2 || id.Ident != "secret" {
			return part{}, fmt.Errorf("only {{secret \"NAME\"}} takes an argument")
		}
		if err := ValidName(s.Text); err != nil {
			return part{}, fmt.Errorf("secret name: %v", err)
		}
		return part{secret: s.Text}, nil
	}
	return part{}, fmt.Errorf("only {{.Field}} and {{secret \"NAME\"}} are allowed")
}

// Secrets returns the names of the secrets the template uses.
func (t Template) Secrets() []string {
	var out []string
	for _, p := range t.parts {
		if p.secret != "" {
			out = append(out, p.secret)
		}
	}
	return out
}

// Fields are the device fields a template expands.
type Fields struct {
	SerialNumber, OUI, ProductClass, Manufacturer, DeviceID string
}

func (f *Fields) get(name string) string {
	switch name {
	case "SerialNumber":
		return f.SerialNumber
	case "OUI":
		return f.OUI
	case "ProductClass":
		return f.ProductClass
	case "Manufacturer":
		return f.Manufacturer
	}
	return f.DeviceID
}

// Render expands the template. secret returns the value of a per-device
// secret; nil renders each as "(secret NAME)", for a dry run.
func (t Template) Render(f *Fields, secret func(name string) (string, error)) (string, error) {
	if len(t.parts) == 1 && t.parts[0].field == "" && t.parts[0].secret == "" {
		return t.parts[0].text, nil
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch {
		case p.field != "":
			b.WriteString(f.get(p.field))
		case p.secret != "":
			if secret == nil {
				b.WriteString("(secret " + p.secret + ")")
				continue
			}
			v, err := secret(p.secret)
			if err != nil {
				return "", fmt.Errorf("secret %q: %w", p.secret, err)
			}
			b.WriteString(v)
		default:
			b.WriteString(p.text)
		}
	}
	return b.String(), nil
}
