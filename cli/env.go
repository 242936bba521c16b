package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/vm"
)

// openStore opens the local image store under the data directory.
func openStore() (*images.Store, error) {
	dir, err := vm.DataDir()
	if err != nil {
		return nil, err
	}
	return images.Open(filepath.Join(dir, "images"))
}

// newManager builds the Manager the commands share, over this host's
// backend and the local image store.
func newManager() (*vm.Manager, error) {
	dir, err := vm.DataDir()
	if err != nil {
		return nil, err
	}
	st, err := images.Open(filepath.Join(dir, "images"))
	if err != nil {
		return nil, err
	}
	be, err := hostBackend()
	if err != nil {
		return nil, err
	}
	return &vm.Manager{DataDir: dir, Backend: be, Images: storeSource{st}}, nil
}

// storeSource adapts images.Store to vm.ImageSource.
type storeSource struct{ st *images.Store }

func (s storeSource) Rootfs(ctx context.Context, ref string) (string, string, string, error) {
	img, _, err := s.st.Resolve(ref)
	if errors.Is(err, images.ErrNotFound) && images.LooksPullable(ref) {
		// Not stored yet: pull it, as `docker run` does.
		var perr error
		if img, perr = pullWithProgress(ctx, s.st, ref, images.PullOptions{}, os.Stderr, "auto"); perr != nil {
			err = fmt.Errorf("%w; pulling it failed: %v", err, perr)
		} else {
			err = nil
		}
	}
	if err != nil {
		return "", "", "", err
	}
	p, err := s.st.RootfsTar(ctx, img.Digest.String())
	if err != nil {
		return "", "", "", err
	}
	return img.Ref(), img.Digest.String(), p, nil
}

// managerFor builds the Manager and resolves the machine name argument of
// cmd, "" meaning the default machine. Without a name and a default it
// says how to give one (see vm.Manager.Resolve for the other errors).
func managerFor(cmd *cobra.Command, name string) (*vm.Manager, string, error) {
	m, err := newManager()
	if err != nil {
		return nil, "", err
	}
	if name == "" {
		d, err := m.Default()
		if err != nil {
			return nil, "", err
		}
		if d == "" {
			return nil, "", fmt.Errorf("no machine named and there is no default machine: give a NAME (see `%s --help`), or create one with `machinetop machine create IMAGE`", cmd.CommandPath())
		}
		name = d
	}
	name, err = m.Resolve(name)
	if err != nil {
		return nil, "", err
	}
	return m, name, nil
}
