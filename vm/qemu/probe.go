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

// bootSector is a 512-byte x86 boot sector that writes "K" to COM1 (port
// 0x3f8) and halts: mov dx,0x3f8; mov al,'K'; out dx,al; cli; hlt; jmp $-1.
func bootSector() []byte {
	b := make([]byte, 512)
	copy(b, []byte{0xba, 0xf8, 0x03, 0xb0, 'K', 0xee, 0xfa, 0xf4, 0xeb, 0xfd})
	b[510], b[511] = 0x55, 0xaa
	return b
}

// probeTimeout bounds the KVM probe.
const probeTimeout = 3 * time.Second

// probeAccel returns "kvm" if a guest under KVM runs its first instructions
// within probeTimeout, else "tcg". The answer is cached in cacheDir for the
// current host boot (keyed by /proc/sys/kernel/random/boot_id).
func probeAccel(ctx context.Context, bin, cacheDir string) string {
	if unix.Access("/dev/kvm", unix.R_OK|unix.W_OK) != nil || runtime.GOARCH != "amd64" {
		return "tcg"
	}
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	cache := ""
	if cacheDir != "" && len(bootID) > 0 {
		cache = filepath.Join(cacheDir, "accel-"+strings.TrimSpace(string(bootID)))
		if b, err := os.ReadFile(cache); err == nil {
			if s := strings.TrimSpace(string(b)); s == "kvm" || s == "tcg" {
				return s
			}
		}
	}
	result := "tcg"
	if probeKVM(ctx, bin) {
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

func probeKVM(ctx context.Context, bin string) bool {
	dir, err := os.MkdirTemp("", "machinetop-kvm-probe")
	if err != nil {
		return false
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "boot.img")
	if os.WriteFile(img, bootSector(), 0o600) != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-accel", "kvm", "-nodefaults", "-no-user-config",
		"-display", "none", "-serial", "stdio", "-monitor", "none", "-m", "16",
		"-drive", "file="+img+",format=raw,if=floppy")
	var out syncBuffer
	cmd.Stdout = &out
	if cmd.Start() != nil {
		return false
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for ctx.Err() == nil {
		if bytes.Contains(out.Bytes(), []byte("K")) {
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
