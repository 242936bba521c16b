package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/machinetop/machinetop/guest/proto"
	"github.com/machinetop/machinetop/vm/control"
	"github.com/machinetop/machinetop/vm/internal/atomicfile"
)

// Machine states as `machine ls` shows them.
const (
	StateStopped  = control.StateStopped
	StateStarting = control.StateStarting
	StateRunning  = control.StateRunning
	StateStopping = control.StateStopping
	// StateBroken is a machine whose configuration cannot be read
	// (Machine.Problem says why); `machine rm` deletes it.
	StateBroken = "broken"
)

// GuestFacts is what the agent last reported about the image's support
// for host integration (sudo, an SSH server, setup problems).
type GuestFacts = control.GuestFacts

// PortForward is a host port forwarded to a guest port while the
// machine runs (SSH, published, or automatic).
type PortForward = control.PortForward

// PortsSummary renders the forwards of ps that serve the machine's own
// ports (SSH and forwards that could not listen left out) for a table
// cell, by guest port: "8123" when the host port is the guest's, else
// "HOST->GUEST" ("18080->80"), comma separated; "" for none.
func PortsSummary(ps []PortForward) string {
	var out []string
	for _, p := range ps {
		if p.Kind == control.ForwardSSH || p.Error != "" {
			continue
		}
		if p.HostPort == p.GuestPort {
			out = append(out, strconv.Itoa(p.GuestPort))
		} else {
			out = append(out, fmt.Sprintf("%d->%d", p.HostPort, p.GuestPort))
		}
	}
	return strings.Join(out, ",")
}

// ActiveMount is a shared directory as the current boot has it.
type ActiveMount struct {
	Mount
	// FSType is "virtiofs" or "9p".
	FSType string `json:"fstype"`
}

// Machine is a machine's configuration joined with its live state.
type Machine struct {
	Config
	State string `json:"status"`
	// Default is true for the default machine.
	Default bool `json:"default"`
	// IP is the guest's address while running (its DHCP lease's), else "".
	IP string `json:"ipAddress,omitempty"`
	// Lease is the guest's DHCP lease while running, nil otherwise.
	Lease *proto.Lease `json:"lease,omitempty"`
	// DiskAllocated is the root disk file's allocated size, bytes (it is
	// sparse, so this is less than DiskBytes).
	DiskAllocated uint64 `json:"diskAllocated"`
	// Started is when the current boot began; zero when stopped.
	Started time.Time `json:"startedDate,omitzero"`
	// Accelerator is "kvm" or "tcg" (QEMU) while running.
	Accelerator string `json:"accelerator,omitempty"`
	// KernelRelease is the guest kernel's release (uname -r) while
	// running, e.g. "6.1.0-57-cloud-amd64".
	KernelRelease string `json:"kernelRelease,omitempty"`
	// Dir is the machine's directory on the host.
	Dir string `json:"dir"`
	// VMPID is the host PID of the VM process (QEMU) while running, else 0
	// (also 0 on vz, where the VM runs inside the supervisor).
	VMPID int `json:"vmPid,omitempty"`
	// SupervisorPID is the host PID of the machine's supervisor while it
	// runs, else 0.
	SupervisorPID int `json:"supervisorPid,omitempty"`
	// SSHPort is the port on the host's 127.0.0.1 forwarded to the
	// machine's SSH port while it runs (see `machine ssh-config`), else 0.
	SSHPort int `json:"sshPort,omitempty"`
	// Ports are the host ports forwarded to the machine while it runs:
	// SSH first, then by guest port (see `machine inspect`).
	Ports []PortForward `json:"ports,omitempty"`
	// ActiveMounts are the directories the running boot shares; changes
	// made with Set show in Mounts and HomeMount until the next boot.
	ActiveMounts []ActiveMount `json:"activeMounts,omitempty"`
	// FileEvents is what the running boot's file-event bridge watches;
	// nil when it does not run.
	FileEvents *control.FileEvents `json:"fileEvents,omitempty"`
	// Guest is what the agent last reported about the image (sudo, an
	// SSH server, setup problems); nil before the first boot.
	Guest *GuestFacts `json:"guest,omitempty"`
	// Notes are messages for the user about missing host integration,
	// e.g. an image without sudo or without an SSH server.
	Notes []string `json:"notes,omitempty"`
	// Stage says what a starting machine is doing ("unpacking the image:
	// 45% (76 of 169 MB)"); "" once its agent answers.
	Stage string `json:"stage,omitempty"`
	// Problem says why a StateBroken machine cannot be used.
	Problem string `json:"problem,omitempty"`
	// StartFailure is why the latest start failed, while the machine is
	// stopped after it; nil otherwise.
	StartFailure *StartFailure `json:"startFailure,omitempty"`
	// Running is what the running boot has when a Set changed CPUs or
	// memory after it started (Config holds the values of the next
	// boot); nil otherwise.
	Running *Resources `json:"running,omitempty"`
}

// StartFailure is a failed start: when (UTC) and the error it returned,
// which names the boot's last stage or the console's last line.
type StartFailure struct {
	At    time.Time `json:"at"`
	Error string    `json:"error"`
}

// Resources are a boot's CPUs and memory.
type Resources struct {
	CPUs int `json:"cpus"`
	// MemoryBytes is bytes.
	MemoryBytes uint64 `json:"memory"`
}

// CPUsShown is the CPU count tables show: the running boot's, then
// "→N" when the next boot gets N (e.g. "2→4").
func (m *Machine) CPUsShown() string {
	s := strconv.Itoa(m.CPUs)
	if r := m.Running; r != nil && r.CPUs != m.CPUs {
		s = strconv.Itoa(r.CPUs) + "→" + s
	}
	return s
}

// MemoryShown is the memory size tables show, written by format: the
// running boot's, then "→" and the next boot's when they differ.
func (m *Machine) MemoryShown(format func(uint64) string) string {
	s := format(m.MemoryBytes)
	if r := m.Running; r != nil && r.MemoryBytes != m.MemoryBytes {
		s = format(r.MemoryBytes) + "→" + s
	}
	return s
}

// List returns every machine with its live state. A machine whose
// configuration cannot be read is listed with StateBroken and the reason
// in Problem, so that one bad machine does not hide the others.
func (m *Manager) List(ctx context.Context) ([]Machine, error) {
	names, err := m.Names()
	if err != nil {
		return nil, err
	}
	def, _ := m.Default()
	out := make([]Machine, 0, len(names))
	for _, n := range names {
		cfg, err := m.Load(n)
		switch {
		case errors.Is(err, ErrNotFound):
			continue // deleted meanwhile
		case err != nil:
			out = append(out, Machine{Config: Config{Name: n}, State: StateBroken, Dir: m.Dir(n).Dir, Problem: err.Error()})
			continue
		}
		out = append(out, *m.get(ctx, cfg, def))
	}
	return out, nil
}

// Get returns cfg's machine with its live state, as its supervisor
// reports it (stopped when none runs).
func (m *Manager) Get(ctx context.Context, cfg *Config) *Machine {
	def, _ := m.Default()
	return m.get(ctx, cfg, def)
}

// get is Get with the default machine's name already read (List reads
// it once for all machines).
func (m *Manager) get(ctx context.Context, cfg *Config, def string) *Machine {
	dir := m.Dir(cfg.Name)
	mc := &Machine{Config: *cfg, State: StateStopped, Dir: dir.Dir}
	mc.Default = def == cfg.Name
	if fi, err := os.Stat(dir.Disk()); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			mc.DiskAllocated = uint64(st.Blocks) * 512
		}
	}
	st, err := m.status(ctx, cfg)
	if err != nil && m.orphanRunning(cfg) {
		// The VM outlived its supervisor: attach a new one, so that the
		// machine reports (and can be driven) as before.
		st, err = m.reattach(ctx, cfg)
		if err != nil {
			mc.State = StateRunning
		}
	}
	if err == nil {
		mc.State = st.State
		mc.Stage = st.Stage
		mc.IP, mc.Lease = st.IP, st.Lease
		mc.Started = st.Started
		mc.Accelerator = st.Accelerator
		mc.KernelRelease = st.Kernel
		mc.VMPID, mc.SupervisorPID = st.VMPID, st.PID
		mc.SSHPort, mc.Guest, mc.Ports = st.SSHPort, st.Guest, st.Ports
		mc.FileEvents = st.FileEvents
		if st.CPUs > 0 && (st.CPUs != cfg.CPUs || st.Memory != cfg.MemoryBytes) {
			mc.Running = &Resources{CPUs: st.CPUs, MemoryBytes: st.Memory}
		}
		for _, am := range st.Mounts {
			mc.ActiveMounts = append(mc.ActiveMounts, ActiveMount{
				Mount: Mount{Host: am.Host, Guest: am.Guest, ReadOnly: am.ReadOnly}, FSType: am.FSType})
		}
	}
	if mc.State == StateStopped {
		var f StartFailure
		if atomicfile.ReadJSON(dir.StartFailure(), &f) == nil && f.Error != "" {
			mc.StartFailure = &f
		}
	}
	if mc.Guest == nil {
		var g GuestFacts
		if atomicfile.ReadJSON(dir.Guest(), &g) == nil {
			mc.Guest = &g
		}
	}
	mc.Notes = notes(mc)
	return mc
}

// notes explains missing host integration of mc to the user.
func notes(mc *Machine) []string {
	g := mc.Guest
	if g == nil {
		return nil
	}
	var out []string
	if !g.Sudo && mc.User.UID != 0 {
		out = append(out, fmt.Sprintf("the image has no sudo, so %s has no passwordless sudo in the machine: install it as root (e.g. `machinetop machine run -n %s --root -- apt-get install -y sudo`) and restart the machine, or use `machinetop machine run --root`", mc.User.Username, mc.Name))
	}
	if !g.SSHD {
		out = append(out, fmt.Sprintf("the image has no SSH server, so `machinetop machine ssh-config` cannot work: install one as root (e.g. `machinetop machine run -n %s --root -- apt-get install -y openssh-server`)", mc.Name))
	}
	for _, p := range g.Problems {
		out = append(out, "setup at the latest boot: "+p)
	}
	if fe := mc.FileEvents; fe != nil && fe.Capped {
		out = append(out, fmt.Sprintf("host file events: the shared directories hold more than %d directories; changes in those left unwatched do not reach the machine: share less (`machinetop machine set -n %s home-mount=none mounts=...`) or turn the bridge off (file-events=off)", fe.Cap, mc.Name))
	}
	if dc := g.DiskCheck; dc != nil && dc.Result == proto.DiskFixed && dc.ExitCode != 0 {
		out = append(out, fmt.Sprintf("the root disk had errors at the latest boot, which e2fsck repaired (exit %d, see guest.diskCheck): files written just before the machine stopped may be incomplete", dc.ExitCode))
	}
	return out
}
