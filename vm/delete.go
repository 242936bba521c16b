package vm

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/layout"
)

// RemoveBroken deletes the machine name whose configuration cannot be
// read (Load fails with ErrBroken): its directory, disk included. It
// refuses while a supervisor still runs it (its VM lives on until it is
// stopped from inside or killed), and returns an error wrapping
// ErrNotFound for an unknown machine.
func (m *Manager) RemoveBroken(name string) (wasDefault bool, err error) {
	if err := ValidateName(name); err != nil {
		return false, err
	}
	if _, err := m.Load(name); !errors.Is(err, ErrBroken) {
		if err == nil {
			return false, fmt.Errorf("machine %s is not broken: use Delete", name)
		}
		return false, err
	}
	if m.supervisorAlive(name) {
		return false, fmt.Errorf("machine %s is broken but its supervisor still runs: power it off from inside (`poweroff`) or end the process holding %s, then delete it again", name, m.Dir(name).SupervisorLock())
	}
	return m.remove(name, "")
}

// Delete stops cfg's machine if it runs, then removes its directory (disk
// included) and its runtime directory. If it was the default machine the
// default is cleared; the returned bool reports that. A delete that a
// concurrent one beats to it waits for that one and returns nil: the
// machine is gone either way.
func (m *Manager) Delete(ctx context.Context, cfg *Config) (wasDefault bool, err error) {
	if err := m.Stop(ctx, cfg, DefaultStopTimeout); err != nil {
		return false, fmt.Errorf("stopping %s before delete: %w", cfg.Name, err)
	}
	wasDefault, err = m.remove(cfg.Name, cfg.ID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return wasDefault, err
}

// remove deletes the stopped machine name's directory and, when its ID is
// known, its runtime directory, and clears the default if it was name.
func (m *Manager) remove(name, id string) (wasDefault bool, err error) {
	l, err := m.lock()
	if err != nil {
		return false, err
	}
	defer l.Unlock()
	// Rename first so a crash mid-removal leaves no half machine visible.
	trash, err := os.MkdirTemp(m.Data.Machines(), layout.DeletingPrefix)
	if err != nil {
		return false, err
	}
	if err := os.Rename(m.Dir(name).Dir, filepath.Join(trash, name)); err != nil {
		os.Remove(trash)
		if errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("%w %q (deleted meanwhile?)", ErrNotFound, name)
		}
		return false, err
	}
	if err := os.RemoveAll(trash); err != nil {
		return false, err
	}
	if id != "" {
		if run, err := layout.RunFor(id); err == nil {
			os.RemoveAll(run.Dir)
		}
	}
	s, _ := m.readState()
	if s.Default == name {
		s.Default = ""
		wasDefault = true
		if err := atomicfile.WriteJSON(m.Data.State(), s); err != nil {
			return wasDefault, err
		}
	}
	return wasDefault, nil
}
