// Package netd is the machine network: one user-space network per data
// directory that every running machine of it joins, built from
// containers/gvisor-tap-vsock (the library podman machine and Lima's
// user-v2 network use). The network is a virtual Ethernet switch whose
// gateway (Gateway) answers ARP, DHCP and DNS and forwards every other TCP
// and UDP flow a guest opens to the host's own network stack, as QEMU's
// user-mode network does (NAT): a guest reaches what the host reaches, and
// HostAlias is the host's loopback interface. Machines reach each other
// directly through the switch.
//
// Each machine has one address on the network, allocated once and kept in
// its configuration (Allocate), and a MAC address derived from it (MACFor);
// the network hands the address out by DHCP as a static lease for that MAC,
// so it survives restarts and host reboots. The gateway's DNS server
// answers NAME.machine (Domain) with the address of running machine NAME
// and forwards every other name to the host's resolver (see Serve).
//
// The network runs in a process of its own (`machinetop __network`,
// Serve), one per data directory (a lock file makes sure), serving a unix
// socket (mode 0600) and nothing else on the host; a supervisor connects
// (Connect), registers its machine (Hello) and hands the connection to the
// hypervisor, which then exchanges Ethernet frames over it, each prefixed
// with its length as a 4-byte big-endian number (QEMU's -netdev socket
// framing; gvisor-tap-vsock's "qemu" protocol). The process exits a while
// after its last machine disconnected.
package netd

import (
	"fmt"
	"net"
	"net/netip"
)

// The network's addresses. The subnet is a private (RFC 1918) /24 apart
// from QEMU's user network (10.0.2.0/24) and from the 192.168.0.x and
// 192.168.1.x of common home routers; a host that routes it itself (Serve
// logs a warning) cannot reach those hosts from its machines, since the
// machine network takes precedence inside them.
var (
	// Subnet is the machine network, 192.168.127.0/24.
	Subnet = netip.MustParsePrefix("192.168.127.0/24")
	// Gateway is the network's gateway, DHCP and DNS server.
	Gateway = netip.MustParseAddr("192.168.127.1")
	// HostAlias is the address at which guests reach the host's loopback
	// interface (127.0.0.1), as 10.0.2.2 on QEMU's user network.
	HostAlias = netip.MustParseAddr("192.168.127.254")
)

// Domain is the DNS domain of machine names: machine NAME is NAME.machine.
const Domain = "machine"

// GatewayMAC is the gateway's Ethernet address (locally administered).
const GatewayMAC = "5a:94:ef:e4:0c:dd"

// MTU is the network's MTU in bytes, handed out by DHCP.
const MTU = 1500

// first and last are the range of machine addresses: .2 to .253 (.1 is
// the gateway, .254 the host alias, .255 broadcast).
var (
	first = netip.MustParseAddr("192.168.127.2")
	last  = netip.MustParseAddr("192.168.127.253")
)

// Allocate returns the lowest machine address that is not in used, or an
// error when all 252 are taken. Addresses in used outside the range are
// ignored.
func Allocate(used []netip.Addr) (netip.Addr, error) {
	taken := make(map[netip.Addr]bool, len(used))
	for _, a := range used {
		taken[a] = true
	}
	for a := first; a.Compare(last) <= 0; a = a.Next() {
		if !taken[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("the machine network %s has no free address: all %d are taken; delete a machine", Subnet, 252)
}

// CheckAddr returns nil when ip is a machine address (in the subnet, .2 to
// .253), else an error naming it.
func CheckAddr(ip netip.Addr) error {
	if !ip.Is4() || ip.Compare(first) < 0 || ip.Compare(last) > 0 {
		return fmt.Errorf("%s is not a machine address: they are %s to %s", ip, first, last)
	}
	return nil
}

// MACFor returns the MAC address of the machine with address ip: the
// locally administered unicast prefix 5a:94:ef followed by the address's
// last three bytes (so it is unique wherever the address is), in the
// colon-separated lowercase form net.HardwareAddr prints.
func MACFor(ip netip.Addr) string {
	b := ip.As4()
	return net.HardwareAddr{0x5a, 0x94, 0xef, b[1], b[2], b[3]}.String()
}
