package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/app"
	"github.com/machinetop/machinetop/images"
)

func newImagePullCmd() *cobra.Command {
	var platform, mode string
	var insecure bool
	c := &cobra.Command{
		Use:   "pull REF",
		Short: "Download an image from an OCI registry",
		Long: "Download REF (NAME[:TAG] or NAME@DIGEST; Docker Hub short names such as ubuntu:24.04 " +
			"are expanded) into the local store and print its digest. A multi-platform image is " +
			"resolved to this host's platform or --platform. Credentials come from the Docker " +
			"config file and its credential helpers. Layers already stored are not downloaded again.",
		Args: wantArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := images.PullOptions{Insecure: insecure}
			if platform != "" {
				p, err := images.ParsePlatform(platform)
				if err != nil {
					return err
				}
				opts.Platform = &p
			}
			a, err := openApp()
			if err != nil {
				return err
			}
			im, err := pullWithProgress(cmd.Context(), a, args[0], opts, cmd.ErrOrStderr(), mode)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), im.Digest)
			return nil
		},
	}
	c.Flags().StringVar(&platform, "platform", "", "`OS/ARCH[/VARIANT]` to pull from a multi-platform image (default: this host's)")
	c.Flags().BoolVar(&insecure, "insecure", false, "allow plain HTTP and unverified TLS for this registry")
	c.Flags().StringVar(&mode, "progress", "auto", "progress `MODE`: auto, plain or tty")
	c.RegisterFlagCompletionFunc("platform", completePlatform)
	c.RegisterFlagCompletionFunc("progress", completeProgress)
	return c
}

// pullWithProgress pulls ref into a's store (journalled, see app.Pull),
// rendering its progress on w.
func pullWithProgress(ctx context.Context, a *app.App, ref string, opts images.PullOptions, w io.Writer, mode string) (images.Image, error) {
	view, err := newProgressView(w, mode)
	if err != nil {
		return images.Image{}, err
	}
	defer view.close()
	return a.Pull(ctx, ref, opts, view.event)
}
