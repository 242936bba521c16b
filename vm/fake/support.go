//go:build linux

package fake

import (
	"archive/tar"
	"context"
	"fmt"
	"github.com/machinetop/machinetop/vm"
	"os"
	"path/filepath"

	"github.com/machinetop/machinetop/vm/kit"
)

// Kit writes a placeholder kernel and initramfs into dir and returns a kit
// naming them: enough for Start, which checks that the files exist but
// boots nothing. It is what a test passes as supervisor Options.Kit, so
// that no kernel is fetched or built.
func Kit(dir string) (*kit.Kit, error) {
	k := &kit.Kit{
		Kernel:        filepath.Join(dir, "vmlinuz"),
		Initramfs:     filepath.Join(dir, "initramfs.cpio"),
		KernelRelease: "0.0.0-fake",
		Digest:        "fake",
	}
	for _, f := range []string{k.Kernel, k.Initramfs} {
		if err := os.WriteFile(f, []byte("fake\n"), 0o600); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Image is an image source for vm.Manager (vm.ImageSource) holding one
// image: Ref, with manifest digest Digest, whose flattened root filesystem
// is the tar file Tar.
type Image struct {
	Ref, Digest, Tar string
}

// NewImage writes a tiny root filesystem tar (etc/hostname) into dir and
// returns an Image serving it as ref.
func NewImage(dir, ref string) (*Image, error) {
	path := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(f)
	content := []byte("fake\n")
	for _, h := range []*tar.Header{
		{Name: "etc/", Mode: 0o755, Typeflag: tar.TypeDir},
		{Name: "etc/hostname", Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg},
	} {
		if err := tw.WriteHeader(h); err != nil {
			f.Close()
			return nil, err
		}
	}
	tw.Write(content)
	if err := tw.Close(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &Image{Ref: ref, Digest: "sha256:" + fmt.Sprintf("%064x", 1), Tar: path}, nil
}

// Rootfs returns the image (for no particular platform) when ref is
// im.Ref, and an error naming ref otherwise (vm.ImageSource).
func (im *Image) Rootfs(ctx context.Context, ref string) (vm.ImageRootfs, error) {
	if ref != im.Ref {
		return vm.ImageRootfs{}, fmt.Errorf("image %s not found", ref)
	}
	return vm.ImageRootfs{Name: im.Ref, Digest: im.Digest, Tar: im.Tar}, nil
}
