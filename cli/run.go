package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
)

func newRunCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "run [-n NAME] [-- CMD ARGS...]",
		Short: "Run a command in a machine (booting it if needed), or open a login shell",
		Long: "Run CMD in the machine with stdin, stdout and stderr attached and exit with its status.\n" +
			"Without CMD, open an interactive login shell (a PTY when stdin is a terminal).",
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := newManager()
			if err != nil {
				return err
			}
			name, err := m.Resolve(name)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := m.Start(ctx, name); err != nil {
				return err
			}
			cl, err := m.Agent(name)
			if err != nil {
				return err
			}
			req := &proto.ExecRequest{Argv: args}
			var st proto.ExitStatus
			if len(args) == 0 && term.IsTerminal(int(os.Stdin.Fd())) {
				st, err = runTTY(ctx, cl, req)
			} else {
				st, err = runPiped(ctx, cl, req)
			}
			if err != nil {
				return err
			}
			if st.Error != "" {
				fmt.Fprintf(os.Stderr, "machinetop: %s\n", st.Error)
			}
			if st.Code != 0 {
				return &ExitError{Code: st.Code}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&name, "name", "n", "", "machine (default: the default machine)")
	return c
}

// runPiped runs req with plain pipes, forwarding SIGINT, SIGTERM and
// SIGHUP to the guest process.
func runPiped(ctx context.Context, cl *client.Client, req *proto.ExecRequest) (proto.ExitStatus, error) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	p, err := cl.Start(ctx, req, os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		var se *client.StartError
		if errors.As(err, &se) {
			return se.Status, nil
		}
		return proto.ExitStatus{}, err
	}
	for {
		select {
		case s := <-sigs:
			p.Signal(int(s.(syscall.Signal)))
		case <-p.Done():
			return p.Wait()
		}
	}
}

// runTTY runs req on a PTY in the guest with the local terminal in raw
// mode, forwarding window size changes (SIGWINCH).
func runTTY(ctx context.Context, cl *client.Client, req *proto.ExecRequest) (proto.ExitStatus, error) {
	fd := int(os.Stdin.Fd())
	req.TTY = true
	req.Term = os.Getenv("TERM")
	if w, h, err := term.GetSize(fd); err == nil {
		req.Cols, req.Rows = uint16(w), uint16(h)
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return proto.ExitStatus{}, fmt.Errorf("setting the terminal to raw mode: %w", err)
	}
	defer term.Restore(fd, old)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	resize := make(chan proto.WindowSize, 1)
	go func() {
		for range winch {
			if w, h, err := term.GetSize(fd); err == nil {
				select {
				case resize <- proto.WindowSize{Rows: uint16(h), Cols: uint16(w)}:
				default:
				}
			}
		}
	}()
	return cl.Exec(ctx, req, os.Stdin, os.Stdout, nil, resize)
}
