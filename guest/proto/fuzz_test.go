package proto

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// The host reads frames and answer lines the guest wrote, and the guest's
// root is not trusted: no input may panic, and what parses must stay
// within the protocol's bounds.

func FuzzReadFrame(f *testing.F) {
	var b bytes.Buffer
	WriteFrame(&b, FrameStdout, []byte("hello"))
	f.Add(b.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{byte(FrameExit), 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			typ, payload, err := ReadFrame(r)
			if err != nil {
				return
			}
			if len(payload) > MaxFrame {
				t.Fatalf("frame type %d of %d bytes exceeds MaxFrame", typ, len(payload))
			}
			// What was read writes back as a frame of the same bytes.
			var out bytes.Buffer
			if err := WriteFrame(&out, typ, payload); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzReadLine(f *testing.F) {
	var b bytes.Buffer
	WriteLine(&b, Response{Info: &Info{Version: "v", Kernel: "k"}})
	f.Add(b.Bytes())
	f.Add([]byte(`{"error":"x","metrics":{"cpus":-1}}` + "\n"))
	f.Add([]byte("{\"copy\":null}"))
	f.Add([]byte(strings.Repeat("[", 10000) + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		for i := 0; i < 4; i++ {
			var resp Response
			if err := ReadLine(br, &resp); err != nil {
				return
			}
		}
	})
}

func FuzzDataReader(f *testing.F) {
	var b bytes.Buffer
	w := &DataWriter{W: &b}
	w.Write([]byte("tar bytes"))
	w.End(nil)
	f.Add(b.Bytes())
	f.Add([]byte{byte(FrameEnd), 0, 0, 0, 1, '{'})
	f.Fuzz(func(t *testing.T, in []byte) {
		io.Copy(io.Discard, &DataReader{R: bytes.NewReader(in)})
	})
}

// rwc is a byte stream for the handshake: reads from r, writes to w.
type rwc struct {
	io.Reader
	w bytes.Buffer
}

func (c *rwc) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *rwc) Close() error                { return nil }

// The guest's side of the handshake reads whatever the channel holds.
func FuzzServerHandshake(f *testing.F) {
	f.Add([]byte(Hello + "abc\n"))
	f.Add([]byte("junk" + Hello + Hello + "x\n" + Hello + "0123\nrest"))
	f.Add([]byte(Hello + strings.Repeat("a", 100) + "\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := &rwc{Reader: bytes.NewReader(in)}
		conn, err := ServerHandshake(c)
		if err != nil {
			return
		}
		n := conn.Nonce()
		if len(n) == 0 || len(n) > maxNonce || strings.ContainsAny(n, " \n") {
			t.Fatalf("accepted nonce %q", n)
		}
		if c.w.String() != Ready+n+"\n" {
			t.Fatalf("answered %q to nonce %q", c.w.String(), n)
		}
		io.Copy(io.Discard, conn)
	})
}
