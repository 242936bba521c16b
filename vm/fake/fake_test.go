//go:build linux

package fake

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/machinetop/machinetop/guest/client"
	"github.com/machinetop/machinetop/vm/driver"
)

func testSpec(t *testing.T) *driver.Spec {
	t.Helper()
	dir := t.TempDir()
	k, err := Kit(dir)
	if err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(p string) *os.File {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	return &driver.Spec{Name: "m1", CPUs: 1, MemoryBytes: 1 << 30, Kernel: open(k.Kernel), Initramfs: open(k.Initramfs),
		Disks: []driver.Disk{{File: open(disk), Serial: "mt-root"}}, RunDir: dir}
}

// session dials the agent and opens a client session on the channel.
func session(t *testing.T, i *Instance) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := i.DialAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := client.NewSessionTimeout(conn, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return client.FromSession(sess)
}

func ping(cl *client.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := cl.Ping(ctx)
	return err
}

func TestAgentServesNewestChannelAndShutdownPowersOff(t *testing.T) {
	b := New(Script{Features: DefaultFeatures()})
	spec := testSpec(t)
	inst, err := b.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	i := inst.(*Instance)
	old := session(t, i)
	if err := ping(old); err != nil {
		t.Fatal(err)
	}
	// A second dial replaces the first channel.
	cl := session(t, i)
	if err := ping(cl); err != nil {
		t.Fatal(err)
	}
	if err := ping(old); err == nil {
		t.Error("the replaced channel still answers")
	}
	if !b.Running(spec.RunDir, "m1") || b.Running(spec.RunDir, "other") {
		t.Error("Running does not find exactly the running machine")
	}
	if _, err := b.Start(context.Background(), spec); err == nil {
		t.Error("a second VM started in the same run directory")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Shutdown(ctx, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-i.Exited():
	case <-time.After(5 * time.Second):
		t.Fatal("the agent's power-off did not end the VM")
	}
	if err := i.Wait(); err != nil {
		t.Errorf("Wait after a guest power-off: %v", err)
	}
	if b.Running(spec.RunDir, "m1") || b.VM(spec.RunDir) != nil {
		t.Error("an exited VM is still registered")
	}
	if _, err := i.DialAgent(ctx); err == nil {
		t.Error("DialAgent to an exited VM succeeded")
	}
}

func TestUncooperativeGuestOnlyDiesByKill(t *testing.T) {
	b := New(Script{Features: DefaultFeatures(), IgnoreStop: true})
	inst, err := b.Start(context.Background(), testSpec(t))
	if err != nil {
		t.Fatal(err)
	}
	i := inst.(*Instance)
	cl := session(t, i)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Shutdown(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := i.RequestStop(ctx); err != nil {
		t.Fatal(err)
	}
	// The agent powers off 100 ms after answering; give it well more.
	select {
	case <-i.Exited():
		t.Fatal("a guest that ignores power-off exited")
	case <-time.After(500 * time.Millisecond):
	}
	i.Kill()
	if err := i.Wait(); !errors.Is(err, ErrKilled) {
		t.Fatalf("Wait after Kill: %v", err)
	}
}

func TestFeaturesAreEnforced(t *testing.T) {
	b := New(Script{Features: driver.Features{}})
	spec := testSpec(t)
	spec.Shares = []driver.Share{{Tag: "mt0", HostPath: t.TempDir()}}
	if _, err := b.Start(context.Background(), spec); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("Start with shares and no ShareFS: %v", err)
	}
	spec.Shares = nil
	inst, err := b.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Kill()
	if b.Running(spec.RunDir, "m1") {
		t.Error("Running is true without Features.Adopt")
	}
	if _, err := b.Adopt(context.Background(), spec); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("Adopt without Features.Adopt: %v", err)
	}
}
