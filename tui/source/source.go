// Package source is everything the dashboard reads from or does to the
// host: machines (vm.Manager), guest metrics (the agent), images
// (images.Store), build journals and console logs. The views never do I/O
// themselves; they call a Source from tea.Cmds. Fake is an in-memory Source
// for tests.
package source

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"

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
	// HostRSS is the resident memory of the machine's VM process on the
	// host, bytes; 0 when not running.
	HostRSS uint64
}

// Host describes the host the machines run on.
type Host struct {
	CPUs int
	// MemUsed and MemTotal are the host's RAM in use and in total, bytes.
	MemUsed, MemTotal uint64
	// Held is the memory held by all machines: the sum of their VM
	// processes' resident memory, bytes.
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

// ErrPullUnavailable is returned by a Source that cannot pull images
// (Fake).
var ErrPullUnavailable = errors.New("pull is not available yet")

// Source is the dashboard's access to the host. Every method may block
// on I/O and must be called from a tea.Cmd, never from Update.
type Source interface {
	// Snapshot lists the machines with guest metrics and host memory.
	Snapshot(ctx context.Context) Snapshot
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	Restart(ctx context.Context, name string) error
	Delete(ctx context.Context, name string) error
	SetDefault(name string) error
	// Create makes a machine and boots it.
	Create(ctx context.Context, opts vm.CreateOptions) error
	// Images lists the local images.
	Images() ([]images.Image, error)
	// RemoveImage deletes an image by reference.
	RemoveImage(ref string) error
	// Pull fetches ref into the store, calling ev for each progress event;
	// ErrPullUnavailable when pulls are not built in.
	Pull(ctx context.Context, ref string, ev func(progress.Event)) error
	// Agent returns the guest agent client of a running machine.
	Agent(name string) (*client.Client, error)
	// ConsoleLog is the path of the machine's console log.
	ConsoleLog(name string) string
	// JournalDir is the directory of build and pull journals.
	JournalDir() string
	// Executable is the machinetop binary builds are run with.
	Executable() string
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
			r.HostRSS = rss(r.VMPID)
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

// rss returns the resident memory of pid in bytes, 0 if unknown.
func rss(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	p, err := process.NewProcess(int32(pid))
	if err != nil {
		return 0
	}
	mi, err := p.MemoryInfo()
	if err != nil {
		return 0
	}
	return mi.RSS
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

// RemoveImage implements Source: the dashboard asked y/N and shows who
// uses an image, so the removal is forced.
func (l *Live) RemoveImage(ref string) error { return l.App.RemoveImage(ref, true) }

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
func (l *Live) ConsoleLog(name string) string { return l.App.Machines.ConsoleLog(name) }

// JournalDir implements Source.
func (l *Live) JournalDir() string { return l.App.Data.Builds() }

// Executable implements Source.
func (l *Live) Executable() string { return l.Exe }
