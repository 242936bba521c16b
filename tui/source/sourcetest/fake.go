// Package sourcetest is test support for the dashboard: Fake, an in-memory
// source.Source whose machines and images are plain slices, while console
// logs and journals are real files under a directory, read with the same
// functions the live source uses.
package sourcetest

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/tui/source"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/layout"
)

// ErrPull is what Fake.Pull returns: the fake has no registry.
var ErrPull = errors.New("pull is not available from the test source")

// Fake is an in-memory Source for tests: actions change the rows at once
// (or fail with Err), Snapshot returns the rows as they are. It is safe for
// concurrent use.
type Fake struct {
	mu sync.Mutex
	// Rows are the machines Snapshot reports.
	Rows []source.Row
	// Host is what Snapshot reports about the host.
	Host source.Host
	// Imgs are the images Images reports.
	Imgs []images.Image
	// Err, when set, is returned by every action.
	Err error
	// Dir holds the console logs (ConsolePath) and journals (JournalDir);
	// tests set it to a t.TempDir.
	Dir string
	// Calls records the actions, e.g. "stop bb".
	Calls []string
}

var _ source.Source = (*Fake)(nil)

func (f *Fake) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, call)
	return f.Err
}

func (f *Fake) set(name string, fn func(*source.Row)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.Rows {
		if f.Rows[i].Name == name {
			fn(&f.Rows[i])
		}
	}
}

// Snapshot implements Source.
func (f *Fake) Snapshot(ctx context.Context) source.Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return source.Snapshot{Time: time.Now(), Rows: append([]source.Row(nil), f.Rows...), Host: f.Host}
}

// Start implements Source.
func (f *Fake) Start(ctx context.Context, name string) error {
	if err := f.record("start " + name); err != nil {
		return err
	}
	f.set(name, func(r *source.Row) { r.State = vm.StateRunning })
	return nil
}

// Stop implements Source.
func (f *Fake) Stop(ctx context.Context, name string) error {
	if err := f.record("stop " + name); err != nil {
		return err
	}
	f.set(name, func(r *source.Row) { r.State = vm.StateStopped; r.Metrics = nil; r.IP = "" })
	return nil
}

// Restart implements Source.
func (f *Fake) Restart(ctx context.Context, name string) error { return f.record("restart " + name) }

// Reclaim implements Source: it records "reclaim NAME" and, unless Err
// is set, moves the row's page cache out of its host-held memory and
// returns a line as the live source does.
func (f *Fake) Reclaim(ctx context.Context, name string) (string, error) {
	if err := f.record("reclaim " + name); err != nil {
		return "", err
	}
	var line string
	f.set(name, func(r *source.Row) {
		if r.Metrics == nil {
			return
		}
		mt := *r.Metrics
		rep := &control.ReclaimReport{HostBefore: r.HostRSS, HostAfter: r.HostRSS - min(mt.MemCache, r.HostRSS),
			Guest: &proto.ReclaimResult{Method: "memory.reclaim", Before: proto.GuestMem{Used: mt.MemUsed, Cache: mt.MemCache}, After: proto.GuestMem{Used: mt.MemUsed}}}
		mt.MemCache = 0
		r.Metrics, r.HostRSS = &mt, rep.HostAfter
		line = vm.ReclaimSummary(name, rep)
	})
	return line, nil
}

// Delete implements Source.
func (f *Fake) Delete(ctx context.Context, name string) error {
	if err := f.record("delete " + name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Rows = slices.DeleteFunc(f.Rows, func(r source.Row) bool { return r.Name == name })
	return nil
}

// SetDefault implements Source.
func (f *Fake) SetDefault(name string) error {
	if err := f.record("default " + name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.Rows {
		f.Rows[i].Default = f.Rows[i].Name == name
	}
	return nil
}

// Create implements Source.
func (f *Fake) Create(ctx context.Context, o vm.CreateOptions) error {
	if err := f.record(fmt.Sprintf("create %s %s %d %d", o.Image, o.Name, o.CPUs, o.MemoryBytes)); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := source.Row{}
	r.Name, r.Image, r.CPUs, r.MemoryBytes, r.State = o.Name, o.Image, o.CPUs, o.MemoryBytes, vm.StateRunning
	f.Rows = append(f.Rows, r)
	return nil
}

// Images implements Source.
func (f *Fake) Images() ([]images.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]images.Image(nil), f.Imgs...), nil
}

// ImageUsers implements Source over Rows with vm.Manager's rule: same
// digest, or same reference.
func (f *Fake) ImageUsers(digest, ref string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.Rows {
		if r.ImageDigest == digest || (ref != "" && r.Image == ref) {
			out = append(out, r.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// RemoveImage implements Source.
func (f *Fake) RemoveImage(ref string) error {
	if err := f.record("rmi " + ref); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Imgs = slices.DeleteFunc(f.Imgs, func(im images.Image) bool { return im.Ref() == ref })
	return nil
}

// Pull implements Source: ErrPull.
func (f *Fake) Pull(ctx context.Context, ref string, ev func(progress.Event)) error {
	return ErrPull
}

// Agent implements Source: always an error.
func (f *Fake) Agent(name string) (*client.Client, error) {
	return nil, fmt.Errorf("machine %s has no agent in tests", name)
}

// ConsolePath is where ConsoleLog reads machine name's log: DIR/NAME.console.log.
func (f *Fake) ConsolePath(name string) string {
	return filepath.Join(f.Dir, name+".console.log")
}

// ConsoleLog implements Source with source.ReadLogFrom on ConsolePath.
func (f *Fake) ConsoleLog(name string, off int64) ([]byte, int64, error) {
	return source.ReadLogFrom(f.ConsolePath(name), off)
}

// JournalDir is where Jobs and JobEvents read journals: DIR/builds.
func (f *Fake) JournalDir() string { return layout.Data{Root: f.Dir}.Builds() }

// Jobs implements Source with progress.List on JournalDir.
func (f *Fake) Jobs() ([]progress.Summary, error) { return progress.List(f.JournalDir()) }

// JobEvents implements Source with source.ReadJob on JournalDir.
func (f *Fake) JobEvents(job string, off int64) ([]progress.Event, int64, error) {
	return source.ReadJob(f.JournalDir(), job, off)
}

// Build implements Source: it records "build ARGS…" (the arguments the
// live source runs `machinetop` with) and returns Err.
func (f *Fake) Build(ctx context.Context, b source.BuildRequest) error {
	return f.record(strings.Join(b.Args(), " "))
}

// OpenURL implements Source: it records "open URL" and returns Err.
func (f *Fake) OpenURL(url string) error { return f.record("open " + url) }
