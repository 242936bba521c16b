//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// OOM scores written to /proc/PID/oom_score_adj (range -1000..1000): the
// agent's own, which the kernel's OOM killer never picks, and the one the
// commands it starts get back (the kernel's default), since a child
// inherits its parent's score.
const (
	oomScoreAgent   = -1000
	oomScoreCommand = 0
)

// ProtectFromOOM makes the calling process exempt from the kernel's OOM
// killer (oom_score_adj -1000), so that a command that exhausts the
// guest's memory is killed instead of the agent. It needs root (or
// CAP_SYS_RESOURCE) and returns the write's error otherwise.
func ProtectFromOOM() error { return setOOMScore(os.Getpid(), oomScoreAgent) }

// setOOMScore writes score to pid's oom_score_adj.
func setOOMScore(pid, score int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/oom_score_adj", []byte(strconv.Itoa(score)+"\n"), 0)
}

// unprotect gives a command the agent started the kernel's default OOM
// score instead of the agent's inherited -1000. It runs right after the
// start returned: os/exec's start returns once the child has executed the
// program, so only the program's first instructions run with the agent's
// score. A child that cannot be given its score is killed rather than
// left immune.
func unprotect(p *os.Process) {
	if err := setOOMScore(p.Pid, oomScoreCommand); err != nil && !os.IsNotExist(err) && !errors.Is(err, syscall.ESRCH) {
		log.Printf("resetting the OOM score of process %d: %v (killing it)", p.Pid, err)
		p.Kill()
	}
}

// Keep backoff: how long Keep waits before it starts the agent again, the
// first time and at most (doubling while the agent keeps dying within
// keepStable of its start).
const (
	keepFirst  = 200 * time.Millisecond
	keepMax    = 5 * time.Second
	keepStable = 30 * time.Second
)

// Keep runs argv (the agent process, e.g. this binary with "serve") as its
// child and starts it again whenever it exits, until ctx ends; then it
// sends the child SIGTERM and returns once it has exited. Keep is what
// /init starts beside the image's init, which knows nothing of the agent:
// an agent killed in the guest (by root, or by the OOM killer despite its
// score) is back within a second, and the host's supervisor reconnects to
// it. Keep protects itself from the OOM killer; the child inherits that.
func Keep(ctx context.Context, argv []string) error {
	if err := ProtectFromOOM(); err != nil {
		log.Printf("OOM protection: %v", err)
	}
	wait := keepFirst
	for {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		started := time.Now()
		if err := cmd.Start(); err != nil {
			log.Printf("starting the agent: %v", err)
		} else {
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				if ctx.Err() != nil {
					return ctx.Err()
				}
				log.Printf("the agent ended (%v); starting it again", describeExit(err))
			case <-ctx.Done():
				cmd.Process.Signal(syscall.SIGTERM)
				<-exited
				return ctx.Err()
			}
		}
		if time.Since(started) > keepStable {
			wait = keepFirst
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
		wait = min(2*wait, keepMax)
	}
}

// describeExit words how a child ended, from cmd.Wait's error.
func describeExit(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Sprintf("killed by signal %d, %v", int(ws.Signal()), ws.Signal())
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
