//go:build linux

package initrd

import (
	"context"
	"errors"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/machinetop/machinetop/guest/dhcp"
	"github.com/machinetop/machinetop/guest/proto"
)

// dhcpWait bounds the first DHCP exchange; both backends' networks answer
// at once, so only a broken network costs this much boot time.
const dhcpWait = 15 * time.Second

// configureNetwork brings lo and the first Ethernet interface up and
// configures the interface by DHCP (sending hostname), records the lease
// in proto.LeaseFile on the root disk for the agent, which renews it, and
// writes the lease's name servers to /etc/resolv.conf (see
// writeResolvConf; firstBoot is whether the image was just unpacked).
func configureNetwork(hostname string, firstBoot bool) error {
	leaseFile := newRoot + proto.LeaseFile
	os.Remove(leaseFile) // an earlier boot's
	ctx, cancel := context.WithTimeout(context.Background(), dhcpWait)
	defer cancel()
	start := time.Now()
	ifname, err := dhcp.FirstInterface(ctx, diskWait)
	if err != nil {
		return err
	}
	c := &dhcp.Client{Interface: ifname, Hostname: hostname}
	l, err := c.Acquire(ctx)
	if err != nil {
		return err
	}
	if err := dhcp.Apply(l, nil); err != nil {
		return err
	}
	log.Printf("network: %s (DHCP in %v)", l, time.Since(start).Round(time.Millisecond))
	if err := os.MkdirAll(filepath.Dir(leaseFile), 0o755); err == nil {
		err = l.Save(leaseFile)
	}
	if err != nil {
		log.Printf("network: recording the lease: %v", err)
	}
	var dns []string
	for _, ip := range l.DNS() {
		dns = append(dns, ip.String())
	}
	if len(dns) == 0 {
		return errors.New("the DHCP lease names no DNS server")
	}
	writeResolvConf(newRoot, dns, l.Search(), firstBoot)
	return nil
}

// resolvMarker opens the resolv.conf that writeResolvConf writes.
const resolvMarker = "# machinetop: from this boot's DHCP lease; delete this line to keep a file of your own\n"

// writeResolvConf writes root's /etc/resolv.conf(5) with the name servers
// and search domains given (the machine network's, which resolve
// NAME.machine and forward the rest to the host's resolver). It keeps a
// working link (e.g. to systemd-resolved's file) and a file the user
// wrote; it replaces a missing, empty or dangling one, one it wrote at an
// earlier boot (resolvMarker), and, at the first boot (firstBoot), the
// image's own copy, which is the build host's (debootstrap and docker
// build leave theirs behind) and cannot resolve machines.
func writeResolvConf(root string, dns, search []string, firstBoot bool) {
	p := root + "/etc/resolv.conf"
	fi, err := os.Lstat(p)
	if err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			if target, err := os.Readlink(p); err == nil {
				if !filepath.IsAbs(target) {
					target = filepath.Join("/etc", target)
				}
				if _, err := os.Stat(root + filepath.Clean(target)); err == nil {
					return
				}
			}
		} else if fi.Size() > 0 && !firstBoot {
			if b, err := os.ReadFile(p); err != nil || !strings.HasPrefix(string(b), resolvMarker) {
				return
			}
		}
		os.Remove(p)
	}
	var b strings.Builder
	b.WriteString(resolvMarker)
	for _, d := range dns {
		b.WriteString("nameserver " + d + "\n")
	}
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		log.Printf("resolv.conf: %v", err)
	}
}
