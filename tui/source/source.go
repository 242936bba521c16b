// Package source is everything the dashboard reads from or does to the
// host: machines (vm.Manager), guest metrics (the agent), images
// (images.Store), console logs, build and pull journals, and builds. The
// views never do I/O themselves; they call a Source from tea.Cmds. Live is
// the Source over the real host; package sourcetest has an in-memory one
// for tests.
package source

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/mem"

	"github.com/machinetop/machinetop/app"
	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/vm"
)

// Row is one machine with its latest samples.
type Row struct {
	vm.Machine
	// Metrics is the guest's latest sample; nil when the machine is not
	// running or its agent did not answer (MetricsErr says why).
	Metrics    *proto.Metrics
	MetricsErr string
	// HostRSS is the memory the machine holds on the host (vm.HostHeld:
	// its VM process's resident memory), bytes; 0 when not running.
	HostRSS uint64
}

// Host describes the host the machines run on.
type Host struct {
	CPUs int
	// MemUsed and MemTotal are the host's RAM in use and in total, bytes.
	MemUsed, MemTotal uint64
	// Held is the memory held by all machines: the sum of their
	// HostRSS, bytes.
	Held uint64
	// Accel is the accelerator of the running machines ("kvm" or "tcg"),
	// "" when none runs.
	Accel string
}

// Snapshot is one refresh of the machines view.
type Snapshot struct {
	Time time.Time
	Rows []Row
	Host Host
	// Err is set when the machine list could not be read; Rows is then
	// empty.
	Err error
}

// Source is the dashboard's access to the host. Every method may block
// on I/O and must be called from a tea.Cmd, never from Update.
type Source interface {
	// Snapshot lists the machines with guest metrics and host memory.
	Snapshot(ctx context.Context) Snapshot
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
	// Reclaim gives the running machine's idle page cache back to the
	// host now (vm.Manager.Reclaim) and returns the line that says what
	// came back (vm.ReclaimSummary).
	Reclaim(ctx context.Context, name string) (string, error)
	Delete(ctx context.Context, name string) error
	SetDefault(name string) error
	// Create makes a machine and boots it.
	Create(ctx context.Context, opts vm.CreateOptions) error
	// Images lists the local images.
	Images() ([]images.Image, error)
	// ImageUsers returns the names of the machines made from the image
	// with this digest ("sha256:…") or reference ("name:tag", "" matches
	// none), sorted: an image in use is not deleted.
	ImageUsers(digest, ref string) ([]string, error)
	// RemoveImage deletes an image by reference.
	RemoveImage(ref string) error
	// Pull fetches ref into the store, calling ev for each progress event
	// (from the calling goroutine or another, one at a time).
	Pull(ctx context.Context, ref string, ev func(progress.Event)) error
	// Agent returns the guest agent client of a running machine.
	Agent(name string) (*client.Client, error)
	// ConsoleLog reads machine name's console log from byte offset off, as
	// ReadLogFrom does; a machine that never booted has no log
	// (fs.ErrNotExist).
	ConsoleLog(name string, off int64) (data []byte, next int64, err error)
	// Jobs lists the journalled builds and pulls (started here or by the
	// CLI in any process), newest first (progress.List).
	Jobs() ([]progress.Summary, error)
	// JobEvents reads the journal of job from byte offset off: its
	// complete events and the offset to read from next (progress.ReadFrom).
	JobEvents(job string, off int64) (evs []progress.Event, next int64, err error)
	// Build builds an image and waits for it to end. It journals like the
	// CLI's `machinetop build`, so Jobs lists it while it runs.
	Build(ctx context.Context, b BuildRequest) error
	// OpenURL opens url (a forwarded port's http://127.0.0.1:PORT) in
	// the host's browser: xdg-open on Linux, open on macOS. It returns
	// once the opener has started.
	OpenURL(url string) error
}

// BuildRequest is what the dashboard's build form asks for.
type BuildRequest struct {
	// Dir is the build context directory (required).
	Dir string
	// Dockerfile is the Dockerfile's path; "" means DIR/Dockerfile.
	Dockerfile string
	// Tag names the image ("name:tag"); "" leaves it untagged.
	Tag string
}

// Args returns the arguments of `machinetop build` for b.
func (b BuildRequest) Args() []string {
	args := []string{"build"}
	if b.Tag != "" {
		args = append(args, "-t", b.Tag)
	}
	if b.Dockerfile != "" {
		args = append(args, "-f", b.Dockerfile)
	}
	return append(args, b.Dir)
}

// Live is the Source over a real data directory (package app).
type Live struct {
	App *app.App
	// Exe is the machinetop executable for `machinetop build`.
	Exe string
}

// metricsTimeout bounds one agent Metrics call in a snapshot.
const metricsTimeout = 1500 * time.Millisecond

// Snapshot implements Source: the machine list, then each running
// machine's guest metrics and VM process RSS, fetched concurrently.
func (l *Live) Snapshot(ctx context.Context) Snapshot {
	s := Snapshot{Time: time.Now(), Host: Host{CPUs: vm.HostCPUs()}}
	if v, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		s.Host.MemUsed, s.Host.MemTotal = v.Used, v.Total
	}
	ms, err := l.App.Machines.List(ctx)
	if err != nil {
		s.Err = err
		return s
	}
	s.Rows = make([]Row, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		s.Rows[i].Machine = m
		if m.State != vm.StateRunning {
			continue
		}
		if s.Host.Accel == "" {
			s.Host.Accel = m.Accelerator
		}
		wg.Add(1)
		go func(r *Row) {
			defer wg.Done()
			r.HostRSS = vm.HostHeld(r.HeldPID())
			cl := l.App.Machines.Agent(&r.Config)
			mctx, cancel := context.WithTimeout(ctx, metricsTimeout)
			defer cancel()
			mt, err := cl.Metrics(mctx)
			if err != nil {
				r.MetricsErr = err.Error()
				return
			}
			r.Metrics = mt
		}(&s.Rows[i])
	}
	wg.Wait()
	for _, r := range s.Rows {
		s.Host.Held += r.HostRSS
	}
	return s
}

// machine loads the machine name and calls fn with it.
func (l *Live) machine(name string, fn func(*vm.Manager, *vm.Config) error) error {
	cfg, err := l.App.Machines.Load(name)
	if err != nil {
		return err
	}
	return fn(l.App.Machines, cfg)
}

// Start implements Source.
func (l *Live) Start(ctx context.Context, name string) error {
	return l.machine(name, func(m *vm.Manager, c *vm.Config) error { return m.Start(ctx, c) })
}

// Stop implements Source with vm.DefaultStopTimeout.
func (l *Live) Stop(ctx context.Context, name string) error {
	return l.machine(name, func(m *vm.Manager, c *vm.Config) error { return m.Stop(ctx, c, vm.DefaultStopTimeout) })
}

// Restart implements Source with vm.DefaultStopTimeout.
func (l *Live) Restart(ctx context.Context, name string) error {
	return l.machine(name, func(m *vm.Manager, c *vm.Config) error { return m.Restart(ctx, c, vm.DefaultStopTimeout) })
}

// Reclaim implements Source, waiting at most 10 s for the host memory to
// settle.
func (l *Live) Reclaim(ctx context.Context, name string) (string, error) {
	var line string
	err := l.machine(name, func(m *vm.Manager, c *vm.Config) error {
		rep, err := m.Reclaim(ctx, c, 0)
		if err == nil {
			line = vm.ReclaimSummary(name, rep)
		}
		return err
	})
	return line, err
}

// Delete implements Source.
func (l *Live) Delete(ctx context.Context, name string) error {
	return l.machine(name, func(m *vm.Manager, c *vm.Config) error {
		_, err := m.Delete(ctx, c)
		return err
	})
}

// SetDefault implements Source.
func (l *Live) SetDefault(name string) error {
	return l.machine(name, func(m *vm.Manager, c *vm.Config) error { return m.SetDefault(c) })
}

// Create implements Source: create (pulling the image when it is not
// stored; the pull is journalled, so the builds view shows it), then boot.
func (l *Live) Create(ctx context.Context, opts vm.CreateOptions) error {
	cfg, err := l.App.Create(ctx, opts, nil)
	if err != nil {
		return err
	}
	return l.App.Machines.Start(ctx, cfg)
}

// Images implements Source.
func (l *Live) Images() ([]images.Image, error) { return l.App.Images.List() }

// ImageUsers implements Source with the rule the CLI's `image rm` uses
// (package app).
func (l *Live) ImageUsers(digest, ref string) ([]string, error) {
	return l.App.Machines.MachinesUsingImage(digest, ref)
}

// RemoveImage implements Source; an image machines were made from is
// refused (app.ErrImageInUse), as in the CLI without --force.
func (l *Live) RemoveImage(ref string) error { return l.App.RemoveImage(ref, false) }

// Pull implements Source.
func (l *Live) Pull(ctx context.Context, ref string, ev func(progress.Event)) error {
	_, err := l.App.Pull(ctx, ref, images.PullOptions{}, ev)
	return err
}

// Agent implements Source.
func (l *Live) Agent(name string) (*client.Client, error) {
	cfg, err := l.App.Machines.Load(name)
	if err != nil {
		return nil, err
	}
	return l.App.Machines.Agent(cfg), nil
}

// ConsoleLog implements Source.
func (l *Live) ConsoleLog(name string, off int64) ([]byte, int64, error) {
	return ReadLogFrom(l.App.Machines.ConsoleLog(name), off)
}

// JournalDir is the directory of the build and pull journals.
func (l *Live) JournalDir() string { return l.App.Data.Builds() }

// Jobs implements Source.
func (l *Live) Jobs() ([]progress.Summary, error) { return progress.List(l.JournalDir()) }

// JobEvents implements Source.
func (l *Live) JobEvents(job string, off int64) ([]progress.Event, int64, error) {
	return ReadJob(l.JournalDir(), job, off)
}

// Build implements Source: it runs `Exe build …` as a subprocess, so the
// build journals exactly as the CLI's does and survives nothing but its
// own end. A failure's error ends with the last line the build wrote to
// stderr.
func (l *Live) Build(ctx context.Context, b BuildRequest) error {
	cmd := exec.CommandContext(ctx, l.Exe, b.Args()...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	if err != nil {
		if s := strings.TrimSpace(errb.String()); s != "" {
			lines := strings.Split(s, "\n")
			err = fmt.Errorf("%v: %s", err, lines[len(lines)-1])
		}
	}
	return err
}

// OpenURL implements Source: it starts the desktop's opener for url
// (xdg-open, or open on macOS) and does not wait for it.
func (l *Live) OpenURL(url string) error {
	opener := "xdg-open"
	if runtime.GOOS == "darwin" {
		opener = "open"
	}
	if _, err := exec.LookPath(opener); err != nil {
		// A server or a container without a desktop.
		return fmt.Errorf("cannot open %s: no %s on this host (y copies the URL)", url, opener)
	}
	cmd := exec.Command(opener, url)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("opening %s: %w", url, err)
	}
	go cmd.Wait()
	return nil
}
