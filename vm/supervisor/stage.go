package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/machinetop/machinetop/vm/control"
)

// Boot stages reach people through control.Status.Stage: the CLI shows
// them while `start` waits, the dashboard beside a starting machine.

// initLogPrefix starts the console lines of the guest's /init
// (guest/initrd), which say what the first boot is doing (unpacking the
// image, checking the disk) before the agent can answer.
const initLogPrefix = "machinetop-init: "

// consolePoll is how often the console log is read for /init's lines
// while the machine boots.
const consolePoll = 250 * time.Millisecond

// stage sets the status's Stage.
func (s *supervisor) stage(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.setStatus(func(st *control.Status) { st.Stage = msg })
}

// stageWriter passes writes through to w and makes each complete line the
// stage (without a "kit: " prefix): the guest kit reports its downloads
// and builds as lines.
type stageWriter struct {
	s    *supervisor
	w    io.Writer
	part []byte
}

func (sw *stageWriter) Write(p []byte) (int, error) {
	sw.part = append(sw.part, p...)
	for {
		i := bytes.IndexByte(sw.part, '\n')
		if i < 0 {
			break
		}
		line := strings.TrimPrefix(string(sw.part[:i]), "kit: ")
		sw.part = sw.part[i+1:]
		if line != "" {
			sw.s.stage("%s", line)
		}
	}
	return sw.w.Write(p)
}

// tailConsole makes /init's console lines from offset off the stage until
// the agent answers or the supervisor ends.
func (s *supervisor) tailConsole(off int64) {
	t := time.NewTicker(consolePoll)
	defer t.Stop()
	var part []byte
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		if st, _ := s.status(); st.AgentReady {
			return
		}
		f, err := os.Open(s.dir.ConsoleLog())
		if err != nil {
			continue
		}
		n, _ := f.ReadAt(buf, off)
		f.Close()
		off += int64(n)
		part = append(part, buf[:n]...)
		last := ""
		for {
			i := bytes.IndexByte(part, '\n')
			if i < 0 {
				break
			}
			line := strings.TrimRight(string(part[:i]), "\r")
			part = part[i+1:]
			if j := strings.Index(line, initLogPrefix); j >= 0 {
				last = line[j+len(initLogPrefix):]
			}
		}
		if len(part) > 4<<10 {
			part = nil // a line this long is no /init line
		}
		if last != "" {
			s.stage("%s", last)
		}
	}
}
