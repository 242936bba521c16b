package cli

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite README.md's command reference from the command tree")

const (
	readme    = "../README.md"
	startMark = "<!-- commands:start -->"
	endMark   = "<!-- commands:end -->"
)

// TestREADMECommandReference fails when the command reference between the
// markers in README.md differs from what --help shows: every command, its
// usage line and summary, and every flag with its help. Run with -update
// to rewrite it.
func TestREADMECommandReference(t *testing.T) {
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, startMark), strings.Index(s, endMark)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %s … %s markers", startMark, endMark)
	}
	want := "\n" + commandReference(NewRootCmd())
	got := s[i+len(startMark) : j]
	if got == want {
		return
	}
	if *update {
		s = s[:i+len(startMark)] + want + s[j:]
		if err := os.WriteFile(readme, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's command reference differs from the command tree; run `go test ./cli -run README -update`.\ngot:\n%s\nwant:\n%s", got, want)
}

// commandReference renders the command tree as a Markdown table: a row
// per command (usage line, summary, aliases), then a row per flag.
func commandReference(root *cobra.Command) string {
	var b strings.Builder
	b.WriteString("| Command | Flag | Meaning |\n|---|---|---|\n")
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	walk(root, func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c != root || c.Name() == "help" {
			return
		}
		use := strings.TrimSuffix(c.UseLine(), " [flags]")
		short := c.Short
		if len(c.Aliases) > 0 {
			short += " (alias: " + strings.Join(c.Aliases, ", ") + ")"
		}
		fmt.Fprintf(&b, "| `%s` | | %s |\n", cell(use), cell(short))
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden || f.Name == "help" {
				return
			}
			fmt.Fprintf(&b, "| | `%s` | %s |\n", cell(flagSyntax(f)), cell(flagMeaning(f)))
		})
	})
	return b.String()
}

// flagSyntax renders a flag as --help does: "-n, --name string".
func flagSyntax(f *pflag.Flag) string {
	s := "--" + f.Name
	if f.Shorthand != "" {
		s = "-" + f.Shorthand + ", " + s
	}
	if name, _ := pflag.UnquoteUsage(f); name != "" {
		s += " " + name
	}
	return s
}

// flagMeaning is the flag's help with its default, as --help shows it.
func flagMeaning(f *pflag.Flag) string {
	_, usage := pflag.UnquoteUsage(f)
	switch f.DefValue {
	case "", "false", "0", "[]":
	default:
		usage += fmt.Sprintf(" (default %s)", f.DefValue)
	}
	return usage
}

// Every flag that takes a value says what to complete it with, so that
// the shell never offers file names where none fit.
func TestEveryFlagCompletes(t *testing.T) {
	walk(NewRootCmd(), func(c *cobra.Command) {
		if c.Hidden || strings.HasPrefix(c.Name(), "__") {
			return
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Value.Type() == "bool" {
				return
			}
			if _, ok := c.GetFlagCompletionFunc(f.Name); !ok {
				t.Errorf("%s --%s has no completion", c.CommandPath(), f.Name)
			}
		})
		if c.Runnable() && c.ValidArgsFunction == nil && c.ValidArgs == nil {
			t.Errorf("%s completes no arguments", c.CommandPath())
		}
	})
}
