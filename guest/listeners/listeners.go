// Package listeners finds the guest's listening TCP sockets, for the
// agent's port reports (proto.OpPorts): it parses the kernel's socket
// tables /proc/net/tcp and /proc/net/tcp6 (see proc_net_tcp in the
// kernel's Documentation/networking/proc_net_tcp.rst), keeping sockets in
// the LISTEN state. Parsing is pure; Read reads the two files.
package listeners

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/machinetop/machinetop/guest/proto"
)

// stateListen is TCP_LISTEN in the st column (include/net/tcp_states.h).
const stateListen = "0A"

// Parse reads one socket table in the format of /proc/net/tcp (ipv6
// false) or /proc/net/tcp6 (ipv6 true) and returns its listening
// sockets, in table order. Addresses are written by the kernel as the
// in-memory bytes of each 32-bit word printed as a number, so they are
// decoded in order with this machine's byte order (order). It returns an
// error naming the line for a malformed one.
func Parse(r io.Reader, ipv6 bool, order binary.ByteOrder) ([]proto.Listener, error) {
	var out []proto.Listener
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		f := strings.Fields(sc.Text())
		if n == 1 && len(f) > 0 && f[0] == "sl" {
			continue // the header
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 4 {
			return nil, fmt.Errorf("socket table line %d: %d fields, want at least 4", n, len(f))
		}
		if f[3] != stateListen {
			continue
		}
		addr, port, err := parseAddr(f[1], ipv6, order)
		if err != nil {
			return nil, fmt.Errorf("socket table line %d: %w", n, err)
		}
		out = append(out, proto.Listener{Addr: addr.String(), Port: port, IPv6: ipv6})
	}
	return out, sc.Err()
}

// parseAddr decodes "HEXADDR:HEXPORT" of a socket table.
func parseAddr(s string, ipv6 bool, order binary.ByteOrder) (netip.Addr, int, error) {
	a, p, ok := strings.Cut(s, ":")
	want := 8
	if ipv6 {
		want = 32
	}
	if !ok || len(a) != want {
		return netip.Addr{}, 0, fmt.Errorf("bad local address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("bad local address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil || port == 0 {
		return netip.Addr{}, 0, fmt.Errorf("bad local port in %q", s)
	}
	// Each 32-bit word was printed as a number: turn it back into the
	// bytes it held in memory (network order).
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		order.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	ip, _ := netip.AddrFromSlice(b)
	return ip.Unmap(), int(port), nil
}

// Read returns the listening TCP sockets of the system whose /proc is at
// procDir ("/proc" in the guest), IPv4 first, sorted by port and then
// address, without duplicates. A missing tcp6 table (a kernel without
// IPv6) is no error.
func Read(procDir string) ([]proto.Listener, error) {
	var all []proto.Listener
	for _, t := range []struct {
		file string
		ipv6 bool
	}{{"tcp", false}, {"tcp6", true}} {
		f, err := os.Open(filepath.Join(procDir, "net", t.file))
		if errors.Is(err, fs.ErrNotExist) && t.ipv6 {
			continue
		}
		if err != nil {
			return nil, err
		}
		ls, err := Parse(f, t.ipv6, binary.NativeEndian)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		all = append(all, ls...)
	}
	Sort(all)
	return slices.Compact(all), nil
}

// Sort orders listeners by port, then IPv4 before IPv6, then address.
func Sort(ls []proto.Listener) {
	slices.SortFunc(ls, func(a, b proto.Listener) int {
		if a.Port != b.Port {
			return a.Port - b.Port
		}
		if a.IPv6 != b.IPv6 {
			if a.IPv6 {
				return 1
			}
			return -1
		}
		return strings.Compare(a.Addr, b.Addr)
	})
}
