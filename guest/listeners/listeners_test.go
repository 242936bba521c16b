package listeners

import (
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/machinetop/machinetop/guest/proto"
)

// Tables as a little-endian Linux (amd64, arm64) writes them.
const tcp4 = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1FBB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1177 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 2177 1 0000000000000000 100 0 0 10 0
   2: 0F02000A:0016 0202000A:D6D6 01 00000000:00000000 02:00000A8F 00000000     0        0 20894 2 0000000000000000 20 4 1 28 146
   3: 0F02000A:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3177 1 0000000000000000 100 0 0 10 0
`

const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1187 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1188 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1189 1 0000000000000000 100 0 0 10 0
   3: 00000000000000000000000001000000:8CA0 00000000000000000000000001000000:0277 01 00000000:00000000 00:00000000 00000000     0        0 1190 1 0000000000000000 100 0 0 10 0
`

func TestParseIPv4(t *testing.T) {
	got, err := Parse(strings.NewReader(tcp4), false, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	want := []proto.Listener{
		{Addr: "0.0.0.0", Port: 8123},
		{Addr: "127.0.0.1", Port: 3306},
		{Addr: "10.0.2.15", Port: 8080},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse = %+v, want %+v", got, want)
	}
}

func TestParseIPv6(t *testing.T) {
	got, err := Parse(strings.NewReader(tcp6), true, binary.LittleEndian)
	if err != nil {
		t.Fatal(err)
	}
	want := []proto.Listener{
		{Addr: "::", Port: 22, IPv6: true},
		{Addr: "::1", Port: 631, IPv6: true},
		// A v4-mapped address is reported as the IPv4 address.
		{Addr: "127.0.0.1", Port: 8000, IPv6: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse = %+v, want %+v", got, want)
	}
}

func TestParseBigEndian(t *testing.T) {
	// A big-endian kernel prints the words in network order.
	in := "   0: 7F000001:0050 00000000:0000 0A 0 0 0 0 0 0 0\n"
	got, err := Parse(strings.NewReader(in), false, binary.BigEndian)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Addr != "127.0.0.1" || got[0].Port != 80 {
		t.Errorf("Parse = %+v, want 127.0.0.1:80", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{
		"   0: 0100007F 00000000:0000 0A\n",      // no port
		"   0: 01007F:0050 00000000:0000 0A\n",   // short address
		"   0: 0100007G:0050 00000000:0000 0A\n", // not hex
		"   0: 0100007F:ZZ 00000000:0000 0A\n",   // bad port
		"   0: 0100007F:0000 00000000:0000 0A\n", // port 0
		"   0: 0100007F:0050\n",                  // too few fields
	} {
		if _, err := Parse(strings.NewReader(in), false, binary.LittleEndian); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("Parse(%q) = %v, want an error naming line 1", in, err)
		}
	}
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "net"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "net", "tcp"), []byte(tcp4), 0o644); err != nil {
		t.Fatal(err)
	}
	// No tcp6: a kernel without IPv6.
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Port != 3306 || got[2].Port != 8123 {
		t.Errorf("Read = %+v, want three listeners sorted by port", got)
	}
	os.WriteFile(filepath.Join(dir, "net", "tcp6"), []byte(tcp6), 0o644)
	got, err = Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 || got[0].Port != 22 || !got[0].IPv6 {
		t.Errorf("Read = %+v, want six listeners from port 22", got)
	}
	if _, err := Read(filepath.Join(dir, "none")); err == nil {
		t.Error("Read of a missing /proc succeeded")
	}
}

func TestReadThisSystem(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	has := func() bool {
		ls, err := Read("/proc")
		if err != nil {
			t.Fatal(err)
		}
		return slices.Contains(ls, proto.Listener{Addr: "127.0.0.1", Port: port})
	}
	if !has() {
		t.Fatalf("Read does not list our listener on 127.0.0.1:%d", port)
	}
	ln.Close()
	if has() {
		t.Fatalf("Read lists 127.0.0.1:%d after it was closed", port)
	}
}
