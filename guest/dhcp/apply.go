//go:build linux

package dhcp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
)

// FirstInterface brings the loopback interface up and returns the name of
// the first Ethernet interface, up, waiting up to wait for its driver to
// create it.
func FirstInterface(ctx context.Context, wait time.Duration) (string, error) {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	deadline := time.Now().Add(wait)
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return "", err
		}
		for _, l := range links {
			a := l.Attrs()
			if a.Name != "lo" && a.EncapType == "ether" && l.Type() == "device" {
				if err := netlink.LinkSetUp(l); err != nil {
					return "", fmt.Errorf("%s up: %w", a.Name, err)
				}
				return a.Name, nil
			}
		}
		if time.Now().After(deadline) {
			return "", errors.New("no network interface")
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Apply configures l's interface from l: its MTU when the lease gives one,
// the leased address (removing old's when that was another), and a
// default route via the lease's router. The address is permanent rather
// than bound to the lease time: the host may sleep past the lease's end,
// and an address that vanished then would cut the machine off; the
// agent renews the lease instead (Keep).
func Apply(l, old *Lease) error {
	if err := l.parse(); err != nil {
		return err
	}
	link, err := netlink.LinkByName(l.Interface)
	if err != nil {
		return fmt.Errorf("dhcp: interface %s: %w", l.Interface, err)
	}
	if mtu := l.MTU(); mtu >= 576 && mtu != link.Attrs().MTU {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("dhcp: MTU %d on %s: %w", mtu, l.Interface, err)
		}
	}
	addr := l.Address()
	if old != nil && old.parse() == nil && old.Interface == l.Interface && !old.Address().IP.Equal(addr.IP) {
		if err := netlink.AddrDel(link, &netlink.Addr{IPNet: old.Address()}); err != nil {
			return fmt.Errorf("dhcp: removing %s from %s: %w", old.Address(), l.Interface, err)
		}
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: addr}); err != nil {
		return fmt.Errorf("dhcp: address %s on %s: %w", addr, l.Interface, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("dhcp: %s up: %w", l.Interface, err)
	}
	if gw := l.Gateway(); gw != nil {
		// No Dst: the default route.
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("dhcp: default route via %s: %w", gw, err)
		}
	}
	return nil
}
