package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/vm"
)

// Fake is an in-memory Source for tests: actions change the rows at once
// (or fail with Err), Snapshot returns the rows as they are. It is safe for
// concurrent use.
type Fake struct {
	mu sync.Mutex
	// Rows are the machines Snapshot reports.
	Rows []Row
	// Host is what Snapshot reports about the host.
	Host Host
	// Imgs are the images Images reports.
	Imgs []images.Image
	// Err, when set, is returned by every action.
	Err error
	// Dir is a directory for console logs and journals ("" means the
	// system temp directory).
	Dir string
	// Calls records the actions, e.g. "stop bb".
	Calls []string
}

func (f *Fake) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls = append(f.Calls, call)
	return f.Err
}

func (f *Fake) set(name string, fn func(*Row)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.Rows {
		if f.Rows[i].Name == name {
			fn(&f.Rows[i])
		}
	}
}

// Snapshot implements Source.
func (f *Fake) Snapshot(ctx context.Context) Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	return Snapshot{Time: time.Now(), Rows: append([]Row(nil), f.Rows...), Host: f.Host}
}

// Start implements Source.
func (f *Fake) Start(ctx context.Context, name string) error {
	if err := f.record("start " + name); err != nil {
		return err
	}
	f.set(name, func(r *Row) { r.State = vm.StateRunning })
	return nil
}

// Stop implements Source.
func (f *Fake) Stop(ctx context.Context, name string) error {
	if err := f.record("stop " + name); err != nil {
		return err
	}
	f.set(name, func(r *Row) { r.State = vm.StateStopped; r.Metrics = nil; r.IP = "" })
	return nil
}

// Restart implements Source.
func (f *Fake) Restart(ctx context.Context, name string) error { return f.record("restart " + name) }

// Delete implements Source.
func (f *Fake) Delete(ctx context.Context, name string) error {
	if err := f.record("delete " + name); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var keep []Row
	for _, r := range f.Rows {
		if r.Name != name {
			keep = append(keep, r)
		}
	}
	f.Rows = keep
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
	r := Row{}
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

// RemoveImage implements Source.
func (f *Fake) RemoveImage(ref string) error {
	if err := f.record("rmi " + ref); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var keep []images.Image
	for _, im := range f.Imgs {
		if im.Ref() != ref {
			keep = append(keep, im)
		}
	}
	f.Imgs = keep
	return nil
}

// Pull implements Source: ErrPullUnavailable (tests).
func (f *Fake) Pull(ctx context.Context, ref string, ev func(progress.Event)) error {
	return ErrPullUnavailable
}

// Agent implements Source: always an error.
func (f *Fake) Agent(name string) (*client.Client, error) {
	return nil, fmt.Errorf("machine %s has no agent in tests", name)
}

func (f *Fake) dir() string {
	if f.Dir != "" {
		return f.Dir
	}
	return os.TempDir()
}

// ConsoleLog implements Source: DIR/NAME.console.log.
func (f *Fake) ConsoleLog(name string) string { return filepath.Join(f.dir(), name+".console.log") }

// JournalDir implements Source: DIR/builds.
func (f *Fake) JournalDir() string { return filepath.Join(f.dir(), "builds") }

// Executable implements Source: "false".
func (f *Fake) Executable() string { return "false" }
