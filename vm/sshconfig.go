package vm

import (
	"context"
	"fmt"
	"strings"
)

// SSHConfig returns an OpenSSH client configuration block (ssh_config(5))
// for cfg's running machine: Host <name>, 127.0.0.1, the forwarded port,
// the mapped user and machinetop's key (see SSHKey). Host keys are not
// recorded: a machine's SSH port is reachable only from this host's
// loopback interface. It returns an error saying what to do when the
// machine is stopped, its backend does not forward SSH, or its image has
// no SSH server.
func (m *Manager) SSHConfig(ctx context.Context, cfg *Config) (string, error) {
	mc := m.Get(ctx, cfg)
	name := cfg.Name
	if mc.Guest != nil && !mc.Guest.SSHD {
		return "", fmt.Errorf("the image of %s has no SSH server: install one in the machine, e.g. `machinetop machine run -n %s --root -- apt-get install -y openssh-server` (or build the image with it), then run ssh-config again", name, name)
	}
	if mc.State != StateRunning {
		return "", fmt.Errorf("machine %s is %s; its SSH port is chosen at boot: start it with `machinetop machine start %s`", name, mc.State, name)
	}
	if mc.SSHPort == 0 {
		return "", fmt.Errorf("machine %s has no forwarded SSH port: this backend does not forward SSH yet; use `machinetop machine run -n %s`", name, name)
	}
	key, _, err := m.SSHKey()
	if err != nil {
		return "", err
	}
	user := mc.User.Username
	if mc.User.UID == 0 || user == "" {
		user = "root"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n", name)
	fmt.Fprintf(&b, "  HostName 127.0.0.1\n")
	fmt.Fprintf(&b, "  Port %d\n", mc.SSHPort)
	fmt.Fprintf(&b, "  User %s\n", user)
	fmt.Fprintf(&b, "  IdentityFile \"%s\"\n", key)
	fmt.Fprintf(&b, "  IdentitiesOnly yes\n")
	fmt.Fprintf(&b, "  StrictHostKeyChecking no\n")
	fmt.Fprintf(&b, "  UserKnownHostsFile /dev/null\n")
	fmt.Fprintf(&b, "  LogLevel ERROR\n")
	return b.String(), nil
}
