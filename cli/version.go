package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/internal/version"
	"github.com/machinetop/machinetop/vm/layout"
)

func newVersionCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print machinetop's version, commit and Go version, and the guest agent's",
		Long: "Print the version, commit, Go toolchain and platform of this machinetop, and which\n" +
			"guest agent binary machines will boot with and its version (the agent reports the same\n" +
			"version to the host). `machinetop --version` prints the first line only.",
		Args: wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var f *outputFormat
			if format != "" {
				var err error
				if f, err = parseFormat("--format", format, false); err != nil {
					return err
				}
			}
			rep := versionReport{Host: version.Get()}
			rep.Guest, rep.GuestPath, rep.GuestNote = guestVersion()
			if f != nil {
				return f.writeOne(cmd.OutOrStdout(), rep)
			}
			writeVersion(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	c.Flags().StringVarP(&format, "format", "f", "", "`FORMAT`: json, or a Go template such as '{{.Host.Version}}' (default: text)")
	c.RegisterFlagCompletionFunc("format", completeWords("json", "{{.Host.Version}}"))
	return c
}

// versionReport is what `machinetop version` prints.
type versionReport struct {
	Host version.Info `json:"machinetop"`
	// Guest is the guest agent binary's build, when one was found.
	Guest *version.Info `json:"guest,omitempty"`
	// GuestPath is the guest binary a boot would use, or "".
	GuestPath string `json:"guestPath,omitempty"`
	// GuestNote says why there is none, or that it differs from the host.
	GuestNote string `json:"guestNote,omitempty"`
}

// guestVersion finds the guest binary a boot would use and reads its
// version.
func guestVersion() (*version.Info, string, string) {
	data, err := layout.DataDir()
	if err != nil {
		return nil, "", err.Error()
	}
	g, err := findGuest(data)
	switch {
	case err != nil:
		return nil, "", err.Error()
	case g.Buildable:
		mod, ver, _ := installedModule()
		return nil, "", fmt.Sprintf("not built yet: the first boot builds it from %s%s@%s with the Go toolchain", mod, guestPackage, ver)
	}
	info, err := guestBuild(g.Path)
	if err != nil {
		return nil, g.Path, fmt.Sprintf("cannot read its version: %v", err)
	}
	note := ""
	if !info.Same(version.Get()) {
		note = "differs from this machinetop: rebuild both with `make`"
	}
	return &info, g.Path, note
}

// writeVersion prints rep as aligned "key  value" lines.
func writeVersion(w io.Writer, rep versionReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	h := rep.Host
	fmt.Fprintf(tw, "machinetop\t%s\n", h.Version)
	if h.Commit != "" {
		fmt.Fprintf(tw, "commit\t%s\n", h.Commit)
	}
	fmt.Fprintf(tw, "go\t%s\n", h.Go)
	fmt.Fprintf(tw, "platform\t%s\n", h.Platform)
	guest := rep.GuestPath
	if rep.Guest != nil {
		guest = rep.Guest.String() + "  " + rep.GuestPath
	}
	if rep.GuestNote != "" {
		if guest != "" {
			guest += "  "
		}
		guest += "(" + rep.GuestNote + ")"
	}
	fmt.Fprintf(tw, "guest agent\t%s\n", guest)
	tw.Flush()
}

// guestBuild reads the build information of the guest binary at path: on
// Linux by running `path --version --json` (it is a static binary for this
// host's architecture), elsewhere, or when that fails, from the build
// information in the file, which lacks the Makefile's -ldflags values
// (`go build -trimpath` does not record them).
func guestBuild(path string) (version.Info, error) {
	if runtime.GOOS == "linux" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, path, "--version", "--json").Output()
		var info version.Info
		if err == nil && json.Unmarshal(out, &info) == nil && info.Version != "" {
			return info, nil
		}
	}
	return version.FromFile(path)
}
