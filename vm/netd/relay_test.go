package netd

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestRelayDatagrams: one datagram is one length-prefixed frame on the
// stream, both ways, and closing one side ends the relay.
func TestRelayDatagrams(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	vmEnd, err := net.FileConn(os.NewFile(uintptr(fds[0]), "vm"))
	if err != nil {
		t.Fatal(err)
	}
	relayEnd, err := net.FileConn(os.NewFile(uintptr(fds[1]), "relay"))
	if err != nil {
		t.Fatal(err)
	}
	netEnd, stream := net.Pipe()
	done := make(chan error, 1)
	go func() { done <- RelayDatagrams(relayEnd, stream) }()

	frame := bytes.Repeat([]byte{0xab}, 1514)
	if _, err := vmEnd.Write(frame); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(netEnd, size[:]); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(netEnd, got); err != nil || !bytes.Equal(got, frame) {
		t.Fatalf("the network got %d bytes (%v), want the %d-byte frame", len(got), err, len(frame))
	}

	back := []byte("a short frame from the network")
	binary.BigEndian.PutUint32(size[:], uint32(len(back)))
	if _, err := netEnd.Write(append(size[:], back...)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, err := vmEnd.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], back) {
		t.Fatalf("the VM got %q (%v), want %q", buf[:n], err, back)
	}

	netEnd.Close()
	if err := <-done; err == nil {
		t.Fatal("the relay ended without an error when the network closed")
	}
}
