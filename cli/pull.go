package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/vm"
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
			st, err := openStore()
			if err != nil {
				return err
			}
			im, err := pullWithProgress(cmd.Context(), st, args[0], opts, cmd.ErrOrStderr(), mode)
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

// pullWithProgress pulls ref into st, journaling and rendering its
// progress on w.
func pullWithProgress(ctx context.Context, st *images.Store, ref string, opts images.PullOptions, w io.Writer, mode string) (images.Image, error) {
	sink, err := newJobSink(w, mode, "pull "+ref)
	if err != nil {
		return images.Image{}, err
	}
	opts.Emit = sink.Emit
	res, err := st.Pull(ctx, ref, opts)
	if err != nil {
		sink.Finish("", nil, err)
		return images.Image{}, err
	}
	sink.Emit(progress.Event{Kind: progress.KindLog, Line: fmt.Sprintf("pulled %s: %d layers downloaded (%s), %d already present",
		res.Image.Ref(), res.Fetched, formatBytes(res.FetchedBytes), res.Skipped)})
	sink.Finish(res.Image.Digest.String(), []string{res.Image.Ref()}, nil)
	return res.Image, nil
}

func formatBytes(n int64) string { return vm.FormatSize(uint64(n)) }
