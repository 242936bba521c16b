//go:build linux

// Package dhcp is the guest's DHCPv4 client (RFC 2131), over
// github.com/insomniacslk/dhcp's nclient4. Both backends' networks serve
// DHCP (QEMU's user network, the Virtualization framework's NAT), so one
// path configures every machine: /init asks for a lease for the first
// Ethernet interface and applies it (address, default route, MTU), and
// the agent renews it for as long as it runs (Keep). The current lease is
// kept in a file (proto.LeaseFile) so that the agent, a process started
// after /init, takes over the lease /init got and reports it.
//
// Lease times run on the guest's boot clock (CLOCK_BOOTTIME): the wall
// clock may jump when the host sets it (a VM without an RTC starts in
// 1970), which must not make a lease look expired or eternal.
package dhcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"golang.org/x/sys/unix"

	"github.com/machinetop/machinetop/guest/proto"
)

// Lease is a lease as the lease file keeps it.
type Lease struct {
	Interface string `json:"interface"`
	// Offer and ACK are the server's DHCPOFFER and DHCPACK as sent (RFC
	// 2131 §2); a renewal replaces ACK.
	Offer []byte `json:"offer"`
	ACK   []byte `json:"ack"`
	// BootID is the kernel's boot ID (/proc/sys/kernel/random/boot_id)
	// when the lease was got: a file from an earlier boot is not used.
	BootID string `json:"bootId"`
	// Obtained is when the ACK arrived, nanoseconds of CLOCK_BOOTTIME.
	Obtained int64 `json:"obtained"`

	offer, ack *dhcpv4.DHCPv4
}

// parse decodes Offer and ACK once.
func (l *Lease) parse() error {
	if l.ack != nil {
		return nil
	}
	var err error
	if l.offer, err = dhcpv4.FromBytes(l.Offer); err != nil {
		return fmt.Errorf("dhcp: lease offer: %w", err)
	}
	if l.ack, err = dhcpv4.FromBytes(l.ACK); err != nil {
		return fmt.Errorf("dhcp: lease ack: %w", err)
	}
	if l.ack.YourIPAddr.To4() == nil || l.ack.YourIPAddr.IsUnspecified() {
		return errors.New("dhcp: the lease gives no IPv4 address")
	}
	return nil
}

// newLease records a lease nclient4 returned for iface.
func newLease(iface string, nl *nclient4.Lease) (*Lease, error) {
	l := &Lease{Interface: iface, Offer: nl.Offer.ToBytes(), ACK: nl.ACK.ToBytes(),
		BootID: bootID(), Obtained: bootNow()}
	if err := l.parse(); err != nil {
		return nil, err
	}
	return l, nil
}

// Address is the leased address with the subnet mask (option 1; the
// address class's default mask when the server sent none).
func (l *Lease) Address() *net.IPNet {
	ip := l.ack.YourIPAddr.To4()
	mask := l.ack.SubnetMask()
	if mask == nil {
		mask = ip.DefaultMask()
	}
	return &net.IPNet{IP: ip, Mask: mask}
}

// Gateway is the first router (option 3), nil for none.
func (l *Lease) Gateway() net.IP {
	if r := l.ack.Router(); len(r) > 0 {
		return r[0]
	}
	return nil
}

// DNS are the name servers (option 6).
func (l *Lease) DNS() []net.IP { return l.ack.DNS() }

// Search is the domain search list (option 119, else the domain name of
// option 15).
func (l *Lease) Search() []string {
	if s := l.ack.DomainSearch(); s != nil && len(s.Labels) > 0 {
		return s.Labels
	}
	if d := l.ack.DomainName(); d != "" {
		return []string{d}
	}
	return nil
}

// MTU is the interface MTU (option 26), 0 when not given.
func (l *Lease) MTU() int {
	b := l.ack.GetOneOption(dhcpv4.OptionInterfaceMTU)
	if len(b) != 2 {
		return 0
	}
	return int(b[0])<<8 | int(b[1])
}

// defaultLeaseTime is assumed when an ACK has no lease time (option 51).
const defaultLeaseTime = time.Hour

// times returns T1 (renew), T2 (rebind) and the lease time, counted from
// Obtained (RFC 2131 §4.4.5: T1 = 0.5 and T2 = 0.875 of the lease time by
// default).
func (l *Lease) times() (t1, t2, lease time.Duration) {
	lease = l.ack.IPAddressLeaseTime(defaultLeaseTime)
	t1 = l.ack.IPAddressRenewalTime(lease / 2)
	t2 = l.ack.IPAddressRebindingTime(lease * 7 / 8)
	return t1, t2, lease
}

// age is how long ago the lease was got.
func (l *Lease) age() time.Duration { return time.Duration(bootNow() - l.Obtained) }

// Info describes the lease for the host, in wall-clock time now.
func (l *Lease) Info() *proto.Lease {
	t1, _, lease := l.times()
	got := time.Now().Add(-l.age())
	out := &proto.Lease{
		Interface: l.Interface,
		Address:   l.Address().String(),
		Server:    l.ack.ServerIdentifier().String(),
		Obtained:  got,
		Renew:     got.Add(t1),
		Expires:   got.Add(lease),
	}
	if gw := l.Gateway(); gw != nil {
		out.Gateway = gw.String()
	}
	for _, d := range l.DNS() {
		out.DNS = append(out.DNS, d.String())
	}
	return out
}

// String is a one-line account of the lease for logs.
func (l *Lease) String() string {
	_, _, lease := l.times()
	s := fmt.Sprintf("%s %s", l.Interface, l.Address())
	if gw := l.Gateway(); gw != nil {
		s += " via " + gw.String()
	}
	if dns := l.DNS(); len(dns) > 0 {
		var names []string
		for _, d := range dns {
			names = append(names, d.String())
		}
		s += ", dns " + strings.Join(names, " ")
	}
	return s + fmt.Sprintf(", lease %v from %s", lease, l.ack.ServerIdentifier())
}

// Save writes l to path atomically (mode 0644).
func (l *Lease) Save(path string) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return renameio.WriteFile(path, b, 0o644)
}

// Load reads the lease file at path. It returns an error wrapping
// os.ErrNotExist when there is none, or only one from an earlier boot.
func Load(path string) (*Lease, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var l Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("dhcp: %s: %w", path, err)
	}
	if l.BootID != bootID() {
		return nil, fmt.Errorf("dhcp: %s is from an earlier boot: %w", path, os.ErrNotExist)
	}
	if err := l.parse(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &l, nil
}

// Client asks a DHCP server for leases on one interface. Each exchange
// opens its own socket and closes it: nclient4's raw socket sees every
// IPv4 packet of the interface, so none is kept open between renewals.
type Client struct {
	// Interface is the network interface, e.g. "eth0".
	Interface string
	// Hostname, when set, is sent as option 12, so that a server that
	// registers names (the macOS NAT's bootpd) knows the machine.
	Hostname string
	// Timeout is how long one attempt waits for an answer (default 2 s);
	// Retries how many attempts an exchange makes (default 4).
	Timeout time.Duration
	Retries int

	// Dial, when set, replaces the raw packet socket on Interface: the
	// connection requests are written to and answers read from, with
	// HWAddr as the client's hardware address and Server as where
	// requests go (tests serve a real DHCP server on loopback).
	Dial   func() (net.PacketConn, error)
	HWAddr net.HardwareAddr
	Server *net.UDPAddr
}

// transactionIDsFromURandom makes the library draw transaction IDs from
// /dev/urandom (u-root's uio/rand reads $UROOT_NOHWRNG) instead of
// spinning on getrandom(2) until the kernel's CRNG is ready, which in a
// guest without an entropy device can take minutes under TCG. A
// transaction ID only has to be unlikely to repeat (RFC 2131 §4.1).
var transactionIDsFromURandom sync.Once

func (c *Client) open() (*nclient4.Client, error) {
	transactionIDsFromURandom.Do(func() { os.Setenv("UROOT_NOHWRNG", "1") })
	timeout, retries := c.Timeout, c.Retries
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	if retries == 0 {
		retries = 4
	}
	opts := []nclient4.ClientOpt{nclient4.WithTimeout(timeout), nclient4.WithRetry(retries)}
	if c.Dial == nil {
		return nclient4.New(c.Interface, opts...)
	}
	conn, err := c.Dial()
	if err != nil {
		return nil, err
	}
	if c.Server != nil {
		opts = append(opts, nclient4.WithServerAddr(c.Server))
	}
	return nclient4.NewWithConn(conn, c.HWAddr, opts...)
}

// modifiers are what every request carries: the options asked for and
// the hostname.
func (c *Client) modifiers() []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{dhcpv4.WithRequestedOptions(
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
		dhcpv4.OptionDomainName, dhcpv4.OptionDNSDomainSearchList, dhcpv4.OptionInterfaceMTU)}
	if c.Hostname != "" {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptHostName(c.Hostname)))
	}
	return m
}

// Acquire gets a new lease (DISCOVER, OFFER, REQUEST, ACK).
func (c *Client) Acquire(ctx context.Context) (*Lease, error) {
	nc, err := c.open()
	if err != nil {
		return nil, fmt.Errorf("dhcp on %s: %w", c.Interface, err)
	}
	defer nc.Close()
	nl, err := nc.Request(ctx, c.modifiers()...)
	if err != nil {
		return nil, fmt.Errorf("dhcp on %s: %w", c.Interface, err)
	}
	return newLease(c.Interface, nl)
}

// Renew asks the server of l to extend it (a REQUEST from the leased
// address, RFC 2131 §4.3.2 RENEWING). A refusal is an error wrapping
// *nclient4.ErrNak.
func (c *Client) Renew(ctx context.Context, l *Lease) (*Lease, error) {
	if err := l.parse(); err != nil {
		return nil, err
	}
	nc, err := c.open()
	if err != nil {
		return nil, fmt.Errorf("dhcp on %s: %w", c.Interface, err)
	}
	defer nc.Close()
	nl, err := nc.Renew(ctx, &nclient4.Lease{Offer: l.offer, ACK: l.ack}, c.modifiers()...)
	if err != nil {
		return nil, fmt.Errorf("dhcp renewal on %s: %w", c.Interface, err)
	}
	return newLease(c.Interface, nl)
}

// bootNow reads CLOCK_BOOTTIME, nanoseconds.
func bootNow() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return ts.Nano()
}

// bootID is this boot's ID, "" where the kernel has none.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}
