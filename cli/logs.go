package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/charmbracelet/x/ansi"
	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/vm"
)

func newLogsCmd() *cobra.Command {
	var boot, follow bool
	var lines int
	c := &cobra.Command{
		Use:               "logs [NAME]",
		Short:             "Show a machine's console log (--boot: the supervisor's boot log)",
		Args:              wantArgs(0, 1),
		ValidArgsFunction: completeMachine,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("tail") {
				lines = -1 // all
			} else if lines < 0 {
				return usagef(cmd, "--tail %d: give a number of lines, 0 or more", lines)
			}
			m, cfg, err := managerFor(cmd, optionalName(args))
			if err != nil {
				return err
			}
			path := m.ConsoleLog(cfg.Name)
			if boot {
				path = m.SupervisorLog(cfg.Name)
			}
			running := func() bool { return m.Get(cmd.Context(), cfg).State != vm.StateStopped }
			return showLog(cmd, path, lines, follow, running)
		},
	}
	c.Flags().BoolVar(&boot, "boot", false, "show the boot (supervisor) log instead of the console")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	c.Flags().IntVarP(&lines, "tail", "n", 0, "print only the last `N` lines (default: all)")
	c.RegisterFlagCompletionFunc("tail", completeNothing)
	return c
}

// showLog prints the file (its last n lines when n ≥ 0) and, with follow,
// keeps printing what is appended until the command's context ends or,
// when running is not nil, the machine has stopped (running is asked
// about once a second while nothing new arrives).
func showLog(cmd *cobra.Command, path string, n int, follow bool, running func() bool) error {
	out := cmd.OutOrStdout()
	f, err := os.Open(path)
	if os.IsNotExist(err) && follow {
		for os.IsNotExist(err) && (running == nil || running()) {
			time.Sleep(200 * time.Millisecond)
			f, err = os.Open(path)
		}
	}
	if os.IsNotExist(err) {
		fmt.Fprintln(cmd.ErrOrStderr(), "note: the machine has not booted yet, so nothing is logged")
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	if n >= 0 {
		data = lastN(data, n)
	}
	if !follow {
		text := plainText(data)
		if len(text) > 0 && text[len(text)-1] != '\n' {
			text = append(text, '\n') // e.g. a login prompt
		}
		out.Write(text)
		return nil
	}
	// Only whole lines are printed, so an escape sequence split across two
	// reads is still removed.
	pending := data
	flush := func() {
		if i := bytes.LastIndexByte(pending, '\n'); i >= 0 {
			out.Write(plainText(pending[:i+1]))
			pending = append([]byte(nil), pending[i+1:]...)
		}
	}
	flush()
	buf := make([]byte, 64<<10)
	for idle := 0; ; idle++ {
		k, err := f.Read(buf)
		if k > 0 {
			pending = append(pending, buf[:k]...)
			flush()
			idle = 0
			continue
		}
		if err != nil && err != io.EOF {
			return err
		}
		// As `docker logs -f`: following ends when the machine has
		// stopped and everything it wrote is printed.
		if running != nil && idle%5 == 4 && !running() {
			if k, _ := f.Read(buf); k > 0 {
				pending = append(pending, buf[:k]...)
				idle = 0
				continue
			}
			if len(pending) > 0 {
				out.Write(append(plainText(pending), '\n'))
			}
			return nil
		}
		select {
		case <-cmd.Context().Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// plainText removes terminal control sequences (the firmware and the
// guest clear the screen and turn line wrapping off on the serial console)
// and carriage returns, which would otherwise act on the user's terminal.
func plainText(b []byte) []byte {
	return []byte(strings.ReplaceAll(ansi.Strip(string(b)), "\r", ""))
}

// lastN returns the last n lines of data.
func lastN(data []byte, n int) []byte {
	if n == 0 {
		return nil
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	i := end
	for count := 0; i > 0; {
		j := bytes.LastIndexByte(data[:i], '\n')
		count++
		if count == n || j < 0 {
			if j < 0 {
				i = 0
			} else {
				i = j + 1
			}
			break
		}
		i = j
	}
	return data[i:]
}
