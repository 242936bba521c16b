package cli

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/vm"
)

// newImageCmd builds `machinetop image`: import, ls and rm over the local
// image store.
func newImageCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "image",
		Short: "Manage the images machines are created from",
	}
	c.AddCommand(newImageImportCmd(), newImagePullCmd(), newImageListCmd(), newImageRemoveCmd())
	return c
}

func newImageImportCmd() *cobra.Command {
	var platform string
	c := &cobra.Command{
		Use:   "import FILE NAME[:TAG]",
		Short: "Add an image from a root filesystem tar, a docker save tar or an OCI layout",
		Long: "Add an image to the local store and print its digest. FILE may be " +
			images.AcceptedFormats + "; compressed files are recognised by content. " +
			"A root filesystem tar becomes an image for this host's platform or --platform; " +
			"from an OCI layout holding several images, the one for that platform is taken.",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts images.ImportOptions
			if platform != "" {
				p, err := images.ParsePlatform(platform)
				if err != nil {
					return err
				}
				opts.Platform = &p
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			im, err := st.Import(cmd.Context(), args[0], args[1], opts)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), im.Digest)
			return nil
		},
	}
	c.Flags().StringVar(&platform, "platform", "", "os/arch[/variant] of the image, e.g. linux/arm64 (default: this host's)")
	return c
}

// imageJSON is one row of `image ls --format json`.
type imageJSON struct {
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Digest     string    `json:"digest"`
	Size       int64     `json:"size"` // bytes, compressed layers plus config
	Created    time.Time `json:"created"`
	Platform   string    `json:"platform"`
}

func newImageListCmd() *cobra.Command {
	var format string
	var quiet bool
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: use table or json", format)
			}
			st, err := openStore()
			if err != nil {
				return err
			}
			ims, err := st.List()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case quiet:
				// One line per image, not per tag, so `rm $(image ls -q)` works.
				seen := map[string]bool{}
				for _, im := range ims {
					if id := shortDigest(im); !seen[id] {
						seen[id] = true
						fmt.Fprintln(out, id)
					}
				}
			case format == "json":
				rows := []imageJSON{}
				for _, im := range ims {
					rows = append(rows, imageJSON{im.Name, im.Tag, im.Digest.String(), im.Size, im.Created, im.Platform})
				}
				return writeJSON(out, rows)
			default:
				writeImageTable(out, ims, time.Now())
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "table", "table or json")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print digests only")
	return c
}

// shortDigest is the 12-hex-digit digest prefix `image ls` shows.
func shortDigest(im images.Image) string { return im.Digest.Hex[:12] }

// writeImageTable prints the `image ls` table; now anchors CREATED.
// PLATFORM is the image's os/arch[/variant], "-" when its config names
// none.
func writeImageTable(w io.Writer, ims []images.Image, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tSIZE\tCREATED\tPLATFORM")
	for _, im := range ims {
		plat := im.Platform
		if plat == "" {
			plat = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", im.Name, im.Tag, shortDigest(im),
			vm.FormatSize(uint64(im.Size)), relativeTime(im.Created, now), plat)
	}
	tw.Flush()
}

// relativeTime renders t as "3 minutes ago", "2 days ago" and so on.
func relativeTime(t, now time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	for _, u := range []struct {
		name string
		d    time.Duration
	}{
		{"year", 365 * 24 * time.Hour},
		{"month", 30 * 24 * time.Hour},
		{"week", 7 * 24 * time.Hour},
		{"day", 24 * time.Hour},
		{"hour", time.Hour},
		{"minute", time.Minute},
		{"second", time.Second},
	} {
		if n := int(d / u.d); n >= 1 {
			if n == 1 {
				return "1 " + u.name + " ago"
			}
			return fmt.Sprintf("%d %ss ago", n, u.name)
		}
	}
	return "just now"
}

func newImageRemoveCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:     "rm REF...",
		Aliases: []string{"delete"},
		Short:   "Remove images by NAME[:TAG] or digest prefix",
		Long: "Remove each REF. A NAME[:TAG] removes that tag; a digest prefix removes the " +
			"image with all its tags. Data no other tag uses is deleted.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := openApp()
			if err != nil {
				return err
			}
			// Carry on past a bad REF so one typo does not block the rest.
			var errs []error
			for _, ref := range args {
				if err := a.RemoveImage(ref, force); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), ref)
			}
			return errors.Join(errs...)
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "remove even when machines were created from the image")
	return c
}
