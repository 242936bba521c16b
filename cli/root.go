// Package cli holds machinetop's command-line interface (cobra commands).
// Commands are thin: they parse flags, call vm.Manager or images.Store, and
// print results.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/internal/version"
)

// ExitFailure is the exit status of every failure of machinetop itself (a
// bad argument, an unknown machine, a boot that failed), as `docker run`
// and `docker exec` use it: `machine run` passes the command's own status
// through, and 125 keeps the two apart. 126 and 127 (the command cannot be
// executed, or was not found) and 128+N (killed by signal N) come from the
// guest.
const ExitFailure = 125

// ExitLost is `machine run`'s status when the connection to the machine
// broke while the command ran (the supervisor was killed, the machine
// stopped): the command's own status is unknown and it may still be
// running. ssh uses 255 alike.
const ExitLost = 255

// ExitError carries a process exit status out of a command (for example the
// status of a command run inside a machine) without printing anything.
type ExitError struct{ Code int }

// Error returns "exit status N".
func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// Main runs the CLI with args (without the program name) and returns the
// process exit status: 0 on success, the command's own status for
// `machine run`, ExitFailure for any error of machinetop's own, printed to
// stderr as "machinetop: …" lines.
func Main(args []string) int {
	if code, ok := helper(args); ok {
		return code
	}
	root := NewRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	printError(os.Stderr, err)
	return ExitFailure
}

// printError writes err as "machinetop: …" lines; each error of an
// errors.Join gets its own prefixed line, so that every failure of a
// command taking several arguments reads the same.
func printError(w io.Writer, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			printError(w, e)
		}
		return
	}
	fmt.Fprintf(w, "machinetop: %v\n", err)
}

// NewRootCmd builds the command tree: `machinetop` alone opens the
// dashboard; `machine` (alias `m`), `image`, `build`, `config`, `system`, `version`,
// `completion` and the hidden supervisor command hang below it.
func NewRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "machinetop",
		Short: "Persistent Linux machines from OCI images, and a dashboard to drive them",
		Long: "machinetop runs persistent Linux machines made from OCI images.\n\n" +
			"Without a command it opens the dashboard; when stdin or stdout is not a terminal it\n" +
			"prints the machine table instead. Failures of machinetop itself exit with status 125;\n" +
			"`machine run` exits with the command's own status.",
		Version:       version.Get().String(),
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          rootArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDashboard(cmd)
		},
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	root.SetVersionTemplate("machinetop version {{.Version}}\n")
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(newImageCmd())
	root.AddCommand(newBuildCmd())
	root.AddCommand(newMachineCmd())
	root.AddCommand(newConfigCmd())
	root.AddCommand(newSystemCmd())
	root.AddCommand(newVersionCmd())
	root.AddCommand(newSuperviseCmd())
	root.AddCommand(newNetworkCmd())
	root.SetHelpCommand(newHelpCmd())
	// Made now rather than at Execute, so that the walk below and the
	// README check see them.
	root.InitDefaultCompletionCmd()
	root.InitDefaultVersionFlag()
	walk(root, func(c *cobra.Command) {
		if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
			makeGroup(c)
		}
		if c.ValidArgsFunction == nil && c.Args != nil {
			// Commands without positional completion offer nothing,
			// rather than the shell's file names.
			c.ValidArgsFunction = cobra.NoFileCompletions
		}
	})
	return root
}

// walk calls fn on c and every command below it.
func walk(c *cobra.Command, fn func(*cobra.Command)) {
	fn(c)
	for _, s := range c.Commands() {
		walk(s, fn)
	}
}

// usageError is a mistake in how a command was called; it is printed
// with a pointer to the command's help.
type usageError struct {
	cmd *cobra.Command
	msg string
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%s\nSee '%s --help'.", e.msg, e.cmd.CommandPath())
}

func usagef(cmd *cobra.Command, format string, a ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, a...)}
}

// unknownCommand is the error for a word that names no subcommand of c,
// with cobra's suggestions of similar names.
func unknownCommand(c *cobra.Command, word string) error {
	msg := fmt.Sprintf("unknown command %q for %q", word, c.CommandPath())
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
	}
	s := c.SuggestionsFor(word)
	for _, g := range c.Commands() {
		// `machinetop start` means `machinetop machine start`.
		for _, sub := range g.Commands() {
			if sub.IsAvailableCommand() && (sub.Name() == word || sub.HasAlias(word)) {
				s = append(s, g.Name()+" "+word)
			}
		}
	}
	if len(s) > 0 {
		msg += "; did you mean " + quoteList(s, "or") + "?"
	}
	return usagef(c, "%s", msg)
}

// rootArgs refuses words after `machinetop` that name no command (the
// dashboard takes no arguments).
func rootArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return unknownCommand(cmd, args[0])
	}
	return nil
}

// makeGroup turns a command that only holds subcommands (machine, image,
// completion) into one that prints its help when called alone and fails
// with a suggestion for an unknown subcommand; cobra would print the help
// and exit 0 for both.
func makeGroup(c *cobra.Command) {
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return unknownCommand(cmd, args[0])
		}
		return nil
	}
	c.RunE = func(cmd *cobra.Command, args []string) error { return cmd.Help() }
	if c.ValidArgsFunction == nil {
		c.ValidArgsFunction = cobra.NoFileCompletions
	}
}

// newHelpCmd replaces cobra's help command, which prints the usage and
// exits 0 for an unknown topic.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND]",
		Short: "Help about any command",
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, s := range cmd.Commands() {
				if s.IsAvailableCommand() && strings.HasPrefix(s.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(s.Name(), s.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil {
				return err
			}
			if len(rest) > 0 && cmd.HasSubCommands() {
				return unknownCommand(cmd, rest[0])
			}
			return cmd.Help()
		},
	}
}

// quoteList renders ["a","b","c"] as `"a", "b" or "c"` (conj "or").
func quoteList(words []string, conj string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = fmt.Sprintf("%q", w)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " " + conj + " " + q[len(q)-1]
}
