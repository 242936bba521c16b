package tests

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// testRunningCLI checks the command-line conventions that need a running
// machine (cli/cli_test.go covers the rest without one): machine run's
// argument forms and exit statuses, and machine rm's refusal, prompt and
// --force.
func testRunningCLI(t *testing.T, e *env, image, name string, systemd bool) {
	// NAME -- CMD, and flags after the command belong to it.
	if _, _, code := e.mt(nil, "machine", "run", name, "--", "sh", "-c", "exit 5"); code != 5 {
		t.Errorf("run NAME -- sh -c 'exit 5': exit %d, want 5", code)
	}
	if out := e.must("machine", "run", "-n", name, "ls", "-la", "/"); !strings.Contains(out, "..") {
		t.Errorf("run -n NAME ls -la /: %q", out)
	}
	if _, errs, code := e.mt(nil, "machine", "run", name, "--", "/no/such/command"); code != 127 || strings.Contains(errs, "machinetop: no such machine") {
		t.Errorf("run of a missing command: exit %d, want 127; %q", code, errs)
	}
	if _, errs, code := e.mt(nil, "machine", "run", "nosuch", "--", "true"); code != 125 || !strings.Contains(errs, `no such machine "nosuch"`) {
		t.Errorf("run in a missing machine: exit %d, want 125; %q", code, errs)
	}
	if out := e.must("machine", "inspect", "-f", "{{.State}}", name); out != "running\n" {
		t.Errorf("inspect -f '{{.State}}': %q", out)
	}

	// rm of a running machine: refused without a terminal...
	e.fails(name+" is running: stop it first", "machine", "rm", name)
	// ...asked on one, naming the machine and its disk; "n" keeps it.
	out, code := rmOnTerminal(t, e, name, "n\r")
	if code != 0 || !strings.Contains(out, name+" is running. Stop it and delete it with its 64G disk (") || !strings.Contains(out, "kept "+name) {
		t.Errorf("rm on a terminal, answered n: exit %d\n%s", code, out)
	}
	if m := e.inspect(name); m.Status != "running" {
		t.Fatalf("after rm answered n: %s, want running", m.Status)
	}
	if systemd {
		return // one more boot of the Debian image would only repeat this
	}
	// --force stops and deletes a running machine.
	other := name + "-force"
	e.must("machine", "create", image, "-n", other, "--cpus", "1", "--memory", "512M", "--home-mount", "none")
	if out := e.must("machine", "rm", "-f", other); out != other+"\n" {
		t.Errorf("rm -f of a running machine printed %q", out)
	}
	if out := e.must("machine", "ls", "--format", "{{.Name}}"); strings.Contains(out, other) {
		t.Errorf("rm -f left %s: %q", other, out)
	}
}

// rmOnTerminal runs `machine rm name` on a PTY, types answer once the
// question shows, and returns everything it printed and its exit status.
func rmOnTerminal(t *testing.T, e *env, name, answer string) (string, int) {
	cmd := exec.Command(filepath.Join(binDir, "machinetop"), "machine", "rm", name)
	cmd.Env = e.environ()
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var mu sync.Mutex
	var buf bytes.Buffer
	done := make(chan struct{})
	go func() {
		io.Copy(lockedWriter{&mu, &buf}, ptmx)
		close(done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		asked := strings.Contains(buf.String(), "[y/N]")
		mu.Unlock()
		if asked {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("rm on a terminal asked nothing: %q", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ptmx.Write([]byte(answer))
	err = cmd.Wait()
	<-done
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return buf.String(), code
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
