package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/layout"
)

// Delete stops cfg's machine if it runs, then removes its directory (disk
// included) and its runtime directory. If it was the default machine the
// default is cleared; the returned bool reports that.
func (m *Manager) Delete(ctx context.Context, cfg *Config) (wasDefault bool, err error) {
	if err := m.Stop(ctx, cfg, DefaultStopTimeout); err != nil {
		return false, fmt.Errorf("stopping %s before delete: %w", cfg.Name, err)
	}
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
	if err := os.Rename(m.Dir(cfg.Name).Dir, filepath.Join(trash, cfg.Name)); err != nil {
		os.Remove(trash)
		return false, err
	}
	if err := os.RemoveAll(trash); err != nil {
		return false, err
	}
	if run, err := layout.RunFor(cfg.ID); err == nil {
		os.RemoveAll(run.Dir)
	}
	s, _ := m.readState()
	if s.Default == cfg.Name {
		s.Default = ""
		wasDefault = true
		if err := atomicfile.WriteJSON(m.Data.State(), s); err != nil {
			return wasDefault, err
		}
	}
	return wasDefault, nil
}
