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
			"FILE - reads the tar from stdin. A root filesystem tar becomes an image for this host's platform or --platform; " +
			"from an OCI layout holding several images, the one for that platform is taken.",
		Example: "  machinetop image import rootfs.tar.gz debian:bookworm\n" +
			"  docker save alpine:3 | machinetop image import - alpine:3",
		Args: wantArgs(2, 2),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return nil, cobra.ShellCompDirectiveDefault // a file
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
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
			path := args[0]
			if path == "-" {
				spooled, cleanup, err := spoolStdin(cmd, "image import -", "image.tar")
				if err != nil {
					return err
				}
				defer cleanup()
				path = spooled
			}
			im, err := st.Import(cmd.Context(), path, args[1], opts)
			if err != nil {
				if path != args[0] {
					return renamePath(err, path, "-")
				}
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), im.Digest)
			return nil
		},
	}
	c.Flags().StringVar(&platform, "platform", "", "`PLATFORM` (os/arch[/variant]) of the image, e.g. linux/arm64 (default: this host's)")
	c.RegisterFlagCompletionFunc("platform", completePlatform)
	return c
}

// imageRow is one row of `image ls`: the fields of its templates and of
// --format json.
type imageRow struct {
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	ID         string    `json:"id"`     // the 12-hex-digit digest prefix the table shows
	Digest     string    `json:"digest"` // the manifest digest, "sha256:…"
	Size       int64     `json:"size"`   // bytes, compressed layers plus config
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
		Long: "List images. Templates (--format) see Repository, Tag, ID (the digest prefix the table\n" +
			"shows), Digest, Size (bytes), Created and Platform.",
		Example: "  machinetop image ls --format '{{.Repository}}:{{.Tag}}'\n" +
			"  machinetop image ls --format 'table {{.Repository}}\\t{{.Size | size}}'",
		Args: wantArgs(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFormat("--format", format, true)
			if err != nil {
				return err
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
			if quiet {
				// One line per image, not per tag, so `rm $(image ls -q)` works.
				seen := map[string]bool{}
				for _, im := range ims {
					if id := shortDigest(im); !seen[id] {
						seen[id] = true
						fmt.Fprintln(out, id)
					}
				}
				return nil
			}
			rows := make([]imageRow, len(ims))
			for i, im := range ims {
				rows[i] = imageRow{im.Name, im.Tag, shortDigest(im), im.Digest.String(), im.Size, im.Created, im.Platform}
			}
			return writeList(out, f, rows, func(w io.Writer, _ []imageRow) { writeImageTable(w, ims, time.Now()) })
		},
	}
	c.Flags().StringVar(&format, "format", "table", formatHelp)
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "print digests only")
	c.RegisterFlagCompletionFunc("format", completeFormat(true))
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

func newImageRemoveCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:     "rm REF...",
		Aliases: []string{"delete"},
		Short:   "Remove images by NAME[:TAG] or digest prefix",
		Long: "Remove each REF. A NAME[:TAG] removes that tag; a digest prefix removes the " +
			"image with all its tags. Data no other tag uses is deleted.",
		Args:              wantArgs(1, -1),
		ValidArgsFunction: completeImages,
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
