package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/app"
	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/build"
	"github.com/machinetop/machinetop/images/build/machine"
)

// newBuildCmd builds `machinetop build`: a Dockerfile build into the
// local image store.
func newBuildCmd() *cobra.Command {
	var tags, buildArgs []string
	var file, target, mode string
	var noCache bool
	c := &cobra.Command{
		Use:   "build [flags] CONTEXT",
		Short: "Build an image from a Dockerfile",
		Long: "Build the Dockerfile in CONTEXT (or -f FILE) into the local image store and print " +
			"the image digest. Unchanged steps come from the build cache. RUN steps execute in a " +
			"builder machine created from the stage's image. Progress goes to stderr and to the " +
			"build journal the dashboard shows. -f - reads the Dockerfile from stdin.",
		Example: "  machinetop build -t app:dev .\n" +
			"  machinetop build -t app:dev -f - . < Dockerfile.dev",
		Args:              wantArgs(1, 1),
		ValidArgsFunction: completeDirs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "-" {
				spooled, cleanup, err := spoolStdin(cmd, "build -f -", "Dockerfile")
				if err != nil {
					return err
				}
				defer cleanup()
				file = spooled
			}
			ba := map[string]string{}
			for _, kv := range buildArgs {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					// As Docker: KEY alone takes the value from the environment.
					var set bool
					if v, set = os.LookupEnv(k); !set {
						continue
					}
				}
				ba[k] = v
			}
			a, err := openApp()
			if err != nil {
				return err
			}
			st := a.Images
			if err := prepareBoot(cmd); err != nil { // RUN steps boot builder machines
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			title := "build " + strings.Join(os.Args[min(len(os.Args), 2):], " ")
			view, err := newProgressView(cmd.ErrOrStderr(), mode)
			if err != nil {
				return err
			}
			defer view.close()
			sink, err := a.NewJob(title, view.event)
			if err != nil {
				return err
			}
			tmp := a.Data.Tmp()
			if err := os.MkdirAll(tmp, 0o700); err != nil {
				return err
			}
			runner := &machine.Runner{Manager: a.Machines, Store: st, Images: app.StoreSource{Store: st}}
			defer runner.Close()
			res, err := build.Build(ctx, build.Options{
				Store: st, ContextDir: args[0], Dockerfile: file, Tags: tags, BuildArgs: ba,
				Target: target, NoCache: noCache, Emit: sink.Emit, TempDir: tmp, Runner: runner,
				Pull: func(ctx context.Context, ref string) error {
					_, err := st.Pull(ctx, ref, images.PullOptions{Emit: sink.Emit})
					return err
				},
			})
			if err != nil {
				sink.Finish("", nil, err)
				if errors.Is(err, context.Canceled) {
					return errors.New("build cancelled")
				}
				return err
			}
			sink.Finish(res.Digest.String(), res.Tags, nil)
			fmt.Fprintln(cmd.OutOrStdout(), res.Digest)
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVarP(&tags, "tag", "t", nil, "`NAME[:TAG]` to store the image under (repeatable)")
	f.StringVarP(&file, "file", "f", "", "the Dockerfile `FILE` (default CONTEXT/Dockerfile; - reads stdin)")
	f.StringArrayVar(&buildArgs, "build-arg", nil, "`KEY=VALUE` for an ARG (repeatable)")
	f.StringVar(&target, "target", "", "build this `STAGE`")
	f.BoolVar(&noCache, "no-cache", false, "run every step, ignoring cached results")
	f.StringVar(&mode, "progress", "auto", "progress `MODE`: auto, plain or tty")
	c.RegisterFlagCompletionFunc("tag", completeNothing)
	c.RegisterFlagCompletionFunc("file", completeFiles)
	c.RegisterFlagCompletionFunc("build-arg", completeNothing)
	c.RegisterFlagCompletionFunc("target", completeNothing)
	c.RegisterFlagCompletionFunc("progress", completeProgress)
	return c
}
