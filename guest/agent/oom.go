//go:build linux

package agent

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
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

// spawnMu serialises the starts of commands, during which the agent's own
// score is the commands' (see startUnprotected).
var spawnMu sync.Mutex

// startUnprotected runs start (which forks and executes a command) with
// the agent's own OOM score set to the kernel's default, and restores the
// agent's score afterwards: a child inherits its parent's score at fork, so
// the command runs with the default from its first instruction (resetting
// the child's score after the start would leave it immune for as long as
// it took, and a program that reads its score at once would see the
// agent's). The agent is exposed only for the fork and exec themselves,
// and then with the default score and an agent's small memory. Restoring
// a negative score needs CAP_SYS_RESOURCE, which a process that had one
// holds; a failure to reset or restore is logged, not fatal.
func startUnprotected(start func() error) error {
	spawnMu.Lock()
	defer spawnMu.Unlock()
	own, err := ownOOMScore()
	if err != nil || own == oomScoreCommand {
		return start()
	}
	if err := setOOMScore(os.Getpid(), oomScoreCommand); err != nil {
		log.Printf("giving a command the default OOM score: %v", err)
		return start()
	}
	defer func() {
		if err := setOOMScore(os.Getpid(), own); err != nil {
			log.Printf("restoring the agent's OOM score %d: %v", own, err)
		}
	}()
	return start()
}

// ownOOMScore reads the calling process's oom_score_adj.
func ownOOMScore() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
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
