package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/machinetop/machinetop/config"
	"github.com/machinetop/machinetop/tui"
	"github.com/machinetop/machinetop/vm"
)

// Where a setting's value came from, as `config show` prints it.
const (
	fromDefault = "default"
	fromFile    = "config file"
	fromEnv     = "MACHINETOP_THEME"
)

// setting is one effective setting: its dotted key in the config file,
// its value as text, and where the value came from.
type setting struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Source string `json:"source"`
}

// settings lists the effective settings of f (flags aside, which only
// apply to their own command).
func settings(f *config.File) []setting {
	pick := func(key string, set bool, file, def string) setting {
		if set {
			return setting{key, file, fromFile}
		}
		return setting{key, def, fromDefault}
	}
	c, d := f.Create, f.Dashboard
	out := []setting{
		pick("create.cpus", c.CPUs != 0, strconv.Itoa(c.CPUs), strconv.Itoa(vm.DefaultCPUs())),
		pick("create.memory", c.Memory != nil, sizeText(c.Memory), vm.FormatSize(vm.DefaultMemory())),
		pick("create.disk", c.Disk != nil, sizeText(c.Disk), vm.FormatSize(vm.DefaultDiskBytes)),
		pick("create.home-mount", c.HomeMount != "", string(c.HomeMount), vm.HomeMountRW),
		pick("create.mounts", c.Mounts != nil, strings.Join(c.Mounts, ","), ""),
		pick("create.kernel", c.Kernel != "", c.Kernel, "(the distribution's)"),
	}
	th := pick("dashboard.theme", d.Theme != "", string(d.Theme), string(config.ThemeAuto))
	if v := strings.ToLower(os.Getenv("MACHINETOP_THEME")); v == "light" || v == "dark" {
		th = setting{"dashboard.theme", v, fromEnv}
	}
	out = append(out, th)
	var refresh string
	if d.Refresh != nil {
		refresh = d.Refresh.String()
	}
	return append(out, pick("dashboard.refresh", d.Refresh != nil, refresh, tui.DefaultRefresh.String()))
}

func sizeText(s *config.Size) string {
	if s == nil {
		return ""
	}
	return s.Text
}

func newConfigCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Show the configuration file's path and the effective settings",
		Long: "machinetop reads defaults for `machine create` and the dashboard's settings from a TOML\n" +
			"file: $MACHINETOP_CONFIG, else $XDG_CONFIG_HOME/machinetop/config.toml, else\n" +
			"~/.config/machinetop/config.toml (on macOS too). Flags override it. Keys:\n\n" +
			"  [create]     cpus = 2, memory = \"4G\", disk = \"32G\", home-mount = \"ro\" (rw, ro, none),\n" +
			"               mounts = [\"~/src:/src\"], kernel = \"FILE\"\n" +
			"  [dashboard]  theme = \"auto\" (light, dark, auto; MACHINETOP_THEME overrides it),\n" +
			"               refresh = \"2s\"\n\n" +
			"An unknown key or a bad value is an error naming the file, line and key.",
	}
	c.AddCommand(&cobra.Command{
		Use:   "path",
		Short: "Print the configuration file's path (whether or not it exists)",
		Args:  wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := config.Path()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), p)
			return nil
		},
	})
	var format string
	show := &cobra.Command{
		Use:     "show",
		Aliases: []string{"ls"},
		Short:   "Print the effective settings and where each came from",
		Long: "Print every setting with its value and its source: default, config file or\n" +
			"MACHINETOP_THEME. Templates (--format) see Key, Value and Source.",
		Args: wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			of, err := parseFormat("--format", format, true)
			if err != nil {
				return err
			}
			f, err := config.Load()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if of.tmpl == nil && !of.json {
				if f.Exists {
					fmt.Fprintf(w, "# %s\n", f.Path)
				} else {
					fmt.Fprintf(w, "# %s (does not exist)\n", f.Path)
				}
			}
			return writeList(w, of, settings(f), writeSettingsTable)
		},
	}
	show.Flags().StringVar(&format, "format", "table", formatHelp)
	show.RegisterFlagCompletionFunc("format", completeNothing)
	c.AddCommand(show)
	return c
}

func writeSettingsTable(w io.Writer, ss []setting) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
	for _, s := range ss {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, s.Value, s.Source)
	}
	tw.Flush()
}

// applyCreateDefaults fills o (and the raw --memory and --disk values)
// from the config file's [create] table for every flag not given.
func applyCreateDefaults(flags *pflag.FlagSet, c config.Create, o *vm.CreateOptions, memory, disk *string) {
	unset := func(name string) bool { return !flags.Changed(name) }
	if unset("cpus") && c.CPUs != 0 {
		o.CPUs = c.CPUs
	}
	if unset("memory") && c.Memory != nil {
		*memory = c.Memory.Text
	}
	if unset("disk") && c.Disk != nil {
		*disk = c.Disk.Text
	}
	if unset("home-mount") && c.HomeMount != "" {
		o.HomeMount = string(c.HomeMount)
	}
	if unset("mount") && c.Mounts != nil {
		o.Mounts = c.Mounts
	}
	if unset("kernel") && c.Kernel != "" {
		o.Kernel = expandHome(c.Kernel)
	}
}

// expandHome replaces a leading "~/" with the home directory.
func expandHome(p string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok {
		if h, err := os.UserHomeDir(); err == nil {
			return h + string(os.PathSeparator) + rest
		}
	}
	return p
}
