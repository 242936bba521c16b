//go:build linux

package qemu

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// probeTimeout bounds the KVM probe.
const probeTimeout = 3 * time.Second

// probeAccel returns "kvm" if kernel, booted under KVM with no init to
// run, reaches its "no init" panic within probeTimeout, else "tcg". A real
// kernel is the test because on nested hosts KVM runs a boot sector fine
// and then hangs in the kernel's early boot. The answer is cached in
// cacheDir for the current host boot (keyed by
// /proc/sys/kernel/random/boot_id).
func probeAccel(ctx context.Context, bin, kernel, cacheDir string) string {
	if kernel == "" || unix.Access("/dev/kvm", unix.R_OK|unix.W_OK) != nil || runtime.GOARCH != "amd64" {
		return "tcg"
	}
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	cache := ""
	if cacheDir != "" && len(bootID) > 0 {
		cache = filepath.Join(cacheDir, "accel-kernel-probe-"+strings.TrimSpace(string(bootID)))
		if b, err := os.ReadFile(cache); err == nil {
			if s := strings.TrimSpace(string(b)); s == "kvm" || s == "tcg" {
				return s
			}
		}
	}
	result := "tcg"
	if probeKVM(ctx, bin, kernel) {
		result = "kvm"
	}
	if cache != "" {
		tmp := cache + ".tmp"
		if os.WriteFile(tmp, []byte(result+"\n"), 0o600) == nil {
			os.Rename(tmp, cache)
		}
	}
	return result
}

func probeKVM(ctx context.Context, bin, kernel string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	// No initramfs and no root: a kernel that boots panics at once with
	// "No working init found" or "VFS: Unable to mount root fs", and
	// panic=-1 with -no-reboot ends QEMU.
	cmd := exec.CommandContext(ctx, bin, "-accel", "kvm", "-machine", "q35", "-nodefaults", "-no-user-config",
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-m", "256", "-no-reboot",
		"-kernel", kernel, "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent")
	var out syncBuffer
	cmd.Stdout = &out
	if cmd.Start() != nil {
		return false
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for ctx.Err() == nil {
		if bytes.Contains(out.Bytes(), []byte("Kernel panic")) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// syncBuffer is a bytes.Buffer safe for the exec copier goroutine and the
// polling reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.buf.Bytes()...)
}
