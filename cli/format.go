package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/docker/go-units"

	"github.com/machinetop/machinetop/vm"
)

// formatHelp is the --format flag's help text for commands that print a
// list.
const formatHelp = "output `FORMAT`: table, json, a Go template such as '{{.Name}}', or 'table TEMPLATE' for aligned columns with a header"

// outputFormat is a parsed --format value, as docker and podman take it:
// "table" (the default columns), "json", a Go template (text/template)
// executed once per item, or "table TEMPLATE" (the template's output
// aligned in columns under a header made from the field names). In
// templates `\t` and `\n` are a tab and a newline.
type outputFormat struct {
	json   bool
	tmpl   *template.Template // nil for the default table and for json
	table  bool               // "table TEMPLATE"
	header string             // the header line of "table TEMPLATE"
	flag   string             // the flag's name for error messages
}

// templateFuncs are the functions templates may call, beside
// text/template's own: json (compact JSON), join, split, lower, upper,
// truncate (to N characters), size (bytes as `machine ls` shows them)
// and ago (a time as "3 days ago").
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"split": strings.Split,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"truncate": func(n int, s string) string {
		if r := []rune(s); len(r) > n {
			return string(r[:n])
		}
		return s
	},
	"size": func(v any) string {
		switch n := v.(type) {
		case uint64:
			return vm.FormatSize(n)
		case int64:
			return vm.FormatSize(uint64(max(n, 0)))
		case int:
			return vm.FormatSize(uint64(max(n, 0)))
		}
		return fmt.Sprint(v)
	},
	"ago": func(t time.Time) string { return relativeTime(t, time.Now()) },
}

// parseFormat parses the value of flag (e.g. "--format"); allowTable is
// false where one item is printed (inspect), which takes json or a
// template only.
func parseFormat(flag, value string, allowTable bool) (*outputFormat, error) {
	f := &outputFormat{flag: flag}
	switch value {
	case "json":
		f.json = true
		return f, nil
	case "table", "":
		if !allowTable {
			return nil, fmt.Errorf("%s %q: use json or a Go template such as '{{.Name}}'", flag, value)
		}
		return f, nil
	}
	text := value
	if rest, ok := strings.CutPrefix(value, "table "); ok && allowTable {
		f.table = true
		text = strings.TrimSpace(rest)
	}
	text = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(text)
	if !strings.Contains(text, "{{") {
		choices := "table, json or a Go template such as '{{.Name}}'"
		if !allowTable {
			choices = "json or a Go template such as '{{.Name}}'"
		}
		return nil, fmt.Errorf("%s %q: use %s", flag, value, choices)
	}
	t, err := template.New("format").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %v", flag, value, strings.TrimPrefix(err.Error(), "template: "))
	}
	f.tmpl = t
	if f.table {
		f.header = templateHeader(text)
	}
	return f, nil
}

var (
	actionRE = regexp.MustCompile(`\{\{-?(.*?)-?\}\}`)
	fieldRE  = regexp.MustCompile(`\.([A-Za-z_][A-Za-z0-9_]*)`)
)

// templateHeader makes the header of "table TEMPLATE": every action
// becomes the upper-cased name of the first field it uses ({{.Name}} →
// NAME); the text between actions stays.
func templateHeader(text string) string {
	return actionRE.ReplaceAllStringFunc(text, func(a string) string {
		if m := fieldRE.FindStringSubmatch(a); m != nil {
			return strings.ToUpper(m[1])
		}
		return ""
	})
}

// execute runs the template on v into buf, explaining an unknown field
// with the fields v has.
func (f *outputFormat) execute(buf *bytes.Buffer, v any) error {
	if err := f.tmpl.Execute(buf, v); err != nil {
		msg := strings.TrimPrefix(err.Error(), "template: ")
		if strings.Contains(msg, "can't evaluate field") {
			msg += "; the fields are " + strings.Join(fieldNames(reflect.TypeOf(v)), ", ")
		}
		return fmt.Errorf("%s: %s", f.flag, msg)
	}
	return nil
}

// writeOne prints v as JSON or through the template (inspect).
func (f *outputFormat) writeOne(w io.Writer, v any) error {
	if f.json {
		return writeJSON(w, v)
	}
	var buf bytes.Buffer
	if err := f.execute(&buf, v); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// writeList prints items in format f: the default table through table,
// a JSON array, or the template once per item. Nothing is written when
// the template fails on any item.
func writeList[T any](w io.Writer, f *outputFormat, items []T, table func(io.Writer, []T)) error {
	switch {
	case f.json:
		if items == nil {
			items = []T{}
		}
		return writeJSON(w, items)
	case f.tmpl == nil:
		table(w, items)
		return nil
	}
	var buf bytes.Buffer
	if len(items) == 0 {
		// Check the template on an empty value, so that a misspelt
		// field fails before there is anything to list too.
		var zero T
		if err := f.execute(&buf, zero); err != nil {
			return err
		}
		buf.Reset()
	}
	if f.table {
		buf.WriteString(f.header + "\n")
	}
	for i := range items {
		if err := f.execute(&buf, items[i]); err != nil {
			return err
		}
		buf.WriteByte('\n')
	}
	if !f.table {
		_, err := w.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	tw.Write(buf.Bytes())
	return tw.Flush()
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fieldNames lists the exported fields templates can use on a value of
// type t, embedded structs' fields included, in declaration order.
func fieldNames(t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	// VisibleFields leaves out a promoted field that an outer one of
	// the same name shadows (the template cannot reach it either).
	var out []string
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.Anonymous && sf.IsExported() {
			out = append(out, sf.Name)
		}
	}
	return out
}

// relativeTime renders t as docker does, e.g. "3 days ago", "About an
// hour ago"; a zero time is "unknown".
func relativeTime(t, now time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return units.HumanDuration(now.Sub(t)) + " ago"
}
