package cli

import (
	"errors"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// wantArgs accepts between min and max positional arguments (max < 0: no
// limit). Otherwise it fails with a usage error naming what is missing or
// extra and the command's usage line, where cobra's own checks say only
// "accepts 1 arg(s), received 0".
func wantArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return usagef(cmd, "missing %s: usage: %s", strings.Join(placeholders(cmd)[len(args):min], " "), cmd.UseLine())
		case max >= 0 && len(args) > max:
			extra := args[max:]
			what := "argument"
			if len(extra) > 1 {
				what = "arguments"
			}
			return usagef(cmd, "unexpected %s %s: usage: %s", what, quoteList(extra, "and"), cmd.UseLine())
		}
		return nil
	}
}

// placeholders are the argument names in cmd's Use line, e.g. ["IMAGE"]
// for "create IMAGE", ["FILE", "NAME[:TAG]"] for "import FILE NAME[:TAG]";
// missing names are padded with "argument".
func placeholders(cmd *cobra.Command) []string {
	var out []string
	for _, f := range strings.Fields(cmd.Use)[1:] {
		if !strings.HasPrefix(f, "[") {
			out = append(out, strings.TrimSuffix(f, "..."))
		}
	}
	for len(out) < 8 {
		out = append(out, "argument")
	}
	return out
}

// flagError rewrites pflag's parse errors as usage errors that say what to
// do: a close flag name for an unknown one, the expected kind of value
// for a bad one.
func flagError(cmd *cobra.Command, err error) error {
	var notExist *pflag.NotExistError
	var badValue *pflag.InvalidValueError
	var noValue *pflag.ValueRequiredError
	switch {
	case errors.As(err, &notExist):
		if name := notExist.GetSpecifiedName(); name != "" {
			msg := "unknown flag --" + name
			if s := similarFlags(cmd, name); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return usagef(cmd, "%s", msg)
		}
		return usagef(cmd, "%v", err)
	case errors.As(err, &badValue):
		f := badValue.GetFlag()
		name := "--" + f.Name
		want := map[string]string{
			"int":      "a whole number",
			"uint":     "a whole number",
			"duration": "a duration such as 10s, 1m30s or 2h",
			"bool":     "true or false",
		}[f.Value.Type()]
		if want == "" {
			return usagef(cmd, "%v", err)
		}
		return usagef(cmd, "%s %q: want %s", name, badValue.GetValue(), want)
	case errors.As(err, &noValue):
		return usagef(cmd, "--%s needs a value", noValue.GetFlag().Name)
	}
	return usagef(cmd, "%v", err)
}

// similarFlags names cmd's flags within two edits of name, or starting
// with it ("--cpu" → "--cpus").
func similarFlags(cmd *cobra.Command, name string) []string {
	var out []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if levenshtein.Distance(name, f.Name, nil) <= 2 || strings.HasPrefix(f.Name, name) {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}
