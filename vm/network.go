package vm

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/machinetop/machinetop/vm/internal/atomicfile"
	"github.com/machinetop/machinetop/vm/layout"
	"github.com/machinetop/machinetop/vm/netd"
)

// NetworkCommand is the hidden subcommand that runs the data directory's
// machine network: `machinetop __network` (vm/netd).
const NetworkCommand = "__network"

// NetIdentity is a machine's identity on the machine network (vm/netd).
type NetIdentity struct {
	// IP is the machine's IPv4 address, e.g. "192.168.127.2", unique
	// among the data directory's machines.
	IP string `json:"ip"`
	// MAC is its network interface's address (netd.MACFor of IP), e.g.
	// "5a:94:ef:a8:7f:02"; the network's DHCP server gives it IP.
	MAC string `json:"mac"`
}

// usedAddresses returns the network addresses of the data directory's
// machines, skipping skip and machines that cannot be read; the caller
// holds the machines lock.
func (m *Manager) usedAddresses(skip string) ([]netip.Addr, error) {
	names, err := m.Names()
	if err != nil {
		return nil, err
	}
	var used []netip.Addr
	for _, n := range names {
		if n == skip {
			continue
		}
		c, err := m.Load(n)
		if err != nil || c.Network == nil {
			continue
		}
		if a, err := netip.ParseAddr(c.Network.IP); err == nil {
			used = append(used, a)
		}
	}
	return used, nil
}

// allocateNetwork gives cfg the lowest free network address and its MAC;
// the caller holds the machines lock and writes cfg.
func (m *Manager) allocateNetwork(cfg *Config) error {
	used, err := m.usedAddresses(cfg.Name)
	if err != nil {
		return err
	}
	ip, err := netd.Allocate(used)
	if err != nil {
		return err
	}
	cfg.Network = &NetIdentity{IP: ip.String(), MAC: netd.MACFor(ip)}
	return nil
}

// EnsureNetwork returns cfg's machine's network identity, allocating and
// saving one (atomically, under the machines lock, unique among the data
// directory's machines) for a machine that has none yet: one made before
// the machine network existed. Machines get theirs at create.
func (m *Manager) EnsureNetwork(cfg *Config) (NetIdentity, error) {
	if cfg.Network != nil {
		return *cfg.Network, nil
	}
	l, err := m.lock()
	if err != nil {
		return NetIdentity{}, err
	}
	defer l.Unlock()
	cur, err := m.Load(cfg.Name)
	if err != nil {
		return NetIdentity{}, err
	}
	if cur.Network == nil {
		if err := m.allocateNetwork(cur); err != nil {
			return NetIdentity{}, err
		}
		if err := atomicfile.WriteJSON(m.Dir(cfg.Name).Config(), cur); err != nil {
			return NetIdentity{}, err
		}
	}
	cfg.Network = cur.Network
	return *cur.Network, nil
}

// StartNetwork starts the data directory's machine network process
// (`machinetop __network`, see Executable) in a session of its own,
// logging to the data directory's network.log, without waiting for it;
// the process exits at once if the network already runs.
func (m *Manager) StartNetwork() error {
	exe := m.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	rel, err := filepath.Rel(m.Data.Root, m.Data.NetworkLog())
	if err != nil {
		return err
	}
	logf, err := layout.OpenBeneath(m.Data.Root, rel, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, NetworkCommand)
	cmd.Env = append(os.Environ(), "MACHINETOP_HOME="+m.Data.Root)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the machine network: %w", err)
	}
	// Reap it when it exits while we live; it outlives us otherwise.
	go cmd.Wait()
	return nil
}
