package proto

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// socketPair returns two connected stream sockets; unlike net.Pipe they
// buffer writes, as the host's socket to QEMU does.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

func TestHandshakeWithGarbageAndPayload(t *testing.T) {
	host, guest := socketPair(t)
	// Leftovers of an earlier connection in both directions.
	if _, err := io.WriteString(host, "\x00\x01junk MACHINETOP-HEL\nMACHINETOP-HELLO bad nonce\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(guest, "old output\n"+Ready+"stale\n"+Ready+"0123\n"); err != nil {
		t.Fatal(err)
	}
	type result struct {
		c   *ServerConn
		err error
	}
	done := make(chan result, 1)
	go func() {
		// Start late so the host has resent Hello a few times.
		time.Sleep(3 * HelloInterval)
		c, err := ServerHandshake(guest)
		done <- result{c, err}
	}()
	hc, err := ClientHandshake(host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	// Session bytes in both directions; the guest must not see the
	// resent Hello lines, nor the host anything before Ready.
	if _, err := hc.Write([]byte("\x00from host")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(r.c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "\x00from host" {
		t.Fatalf("guest read %q", buf)
	}
	if _, err := r.c.Write([]byte("\x00from guest")); err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, 11)
	if _, err := io.ReadFull(hc, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "\x00from guest" {
		t.Fatalf("host read %q", buf)
	}
}

func TestClientKeepsBytesAfterReady(t *testing.T) {
	host, guest := socketPair(t)
	go func() {
		br := bufio.NewReader(guest)
		line, _ := br.ReadString('\n')
		nonce := strings.TrimSuffix(strings.TrimPrefix(line, Hello), "\n")
		// Stale answer with a wrong nonce, then the right one with
		// session bytes in the same write.
		io.WriteString(guest, Ready+"ffff\n"+Ready+nonce+"\nTAIL")
	}()
	hc, err := ClientHandshake(host, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(hc, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != "TAIL" {
		t.Fatalf("read %q after ready", buf)
	}
}

func TestClientTimeout(t *testing.T) {
	host, guest := socketPair(t)
	go io.Copy(io.Discard, guest)
	io.WriteString(guest, Ready+"notyours\n")
	start := time.Now()
	_, err := ClientHandshake(host, 700*time.Millisecond)
	if !errors.Is(err, ErrHandshakeTimeout) {
		t.Fatalf("err = %v, want timeout", err)
	}
	if d := time.Since(start); d < 600*time.Millisecond || d > 2*time.Second {
		t.Fatalf("timed out after %v", d)
	}
}

func TestServerHandshakeEOF(t *testing.T) {
	host, guest := socketPair(t)
	io.WriteString(host, "garbage without hello")
	host.Close()
	if _, err := ServerHandshake(guest); !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want EOF", err)
	}
}

// A guest that answered a stale Hello must answer the new host's Hello
// when it arrives before any session byte.
func TestServerAnswersNewNonceInPlace(t *testing.T) {
	host, guest := socketPair(t)
	io.WriteString(host, Hello+"stale\n")
	sc, err := ServerHandshake(guest)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Nonce() != "stale" {
		t.Fatalf("nonce %q", sc.Nonce())
	}
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 5)
		_, err := io.ReadFull(sc, buf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf)
	}()
	hc, err := ClientHandshake(host, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hc.Write([]byte("\x00data"))
	if s := <-got; s != "\x00data" {
		t.Fatalf("guest read %q", s)
	}
}
