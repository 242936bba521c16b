package proto

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// maxNonce bounds the nonce length (bytes) the guest accepts, so a stray
// Hello without a newline cannot make it buffer without limit.
const maxNonce = 64

// HelloInterval is how often ClientHandshake resends Hello while it waits
// for the matching Ready line.
const HelloInterval = 250 * time.Millisecond

// ErrHandshakeTimeout is returned (wrapped) by ClientHandshake when no Ready
// line with its nonce arrived in time.
var ErrHandshakeTimeout = errors.New("proto: no answer from the guest agent")

// ServerConn is the guest end of the channel after the handshake. Reads
// start with any bytes the handshake buffered. Until the first session byte
// arrives it drops Hello lines the host resent; a Hello with a different
// nonce (a new host connection that found a stale Ready) is answered with a
// fresh Ready in place. ServerConn implements net.Conn; address and deadline
// methods delegate to the underlying stream when it has them.
type ServerConn struct {
	rw io.ReadWriteCloser
	br *bufio.Reader

	wmu   sync.Mutex // serializes Ready answers with session writes
	nonce string
	// inSession is set once a byte that is not part of a Hello line has
	// been returned to the caller; from then on reads pass through.
	inSession bool
	pending   []byte // a non-Hello line read while looking for Hellos
}

// ServerHandshake is the guest side of the handshake (see the package
// comment). It discards bytes until it reads Hello, a nonce of 1 to 64
// printable ASCII bytes and "\n"; then it writes Ready, the nonce and "\n".
// It returns the stream positioned after the Hello line, with bytes already
// buffered preserved. It returns the read error (io.EOF when the host end is
// closed, as a virtio-serial port reports it) or the write error; callers
// may call it again on the same stream.
func ServerHandshake(rw io.ReadWriteCloser) (*ServerConn, error) {
	c := &ServerConn{rw: rw, br: bufio.NewReaderSize(rw, 64<<10)}
	nonce, err := readHello(c.br)
	if err != nil {
		return nil, err
	}
	if err := c.answer(nonce); err != nil {
		return nil, err
	}
	return c, nil
}

// readHello scans br for Hello+nonce+"\n" and returns the nonce.
func readHello(br *bufio.Reader) (string, error) {
	matched := 0 // bytes of Hello matched so far
	for {
		b, err := br.ReadByte()
		if err != nil {
			return "", err
		}
		if b == Hello[matched] {
			matched++
			if matched < len(Hello) {
				continue
			}
			matched = 0
			nonce, ok, err := readNonce(br)
			if err != nil {
				return "", err
			}
			if ok {
				return nonce, nil
			}
			continue
		}
		// Hello's first byte does not recur in it, so a mismatch can
		// only restart the match at this byte.
		matched = 0
		if b == Hello[0] {
			matched = 1
		}
	}
}

// readNonce reads a nonce and its "\n". ok is false when the bytes do not
// form a nonce; the offending byte is left unread so it can start a Hello.
func readNonce(br *bufio.Reader) (nonce string, ok bool, err error) {
	var buf []byte
	for len(buf) <= maxNonce {
		b, err := br.ReadByte()
		if err != nil {
			return "", false, err
		}
		if b == '\n' {
			return string(buf), len(buf) > 0, nil
		}
		if b < 0x21 || b > 0x7e {
			_ = br.UnreadByte()
			return "", false, nil
		}
		buf = append(buf, b)
	}
	return "", false, nil
}

func (c *ServerConn) answer(nonce string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nonce = nonce
	_, err := io.WriteString(c.rw, Ready+nonce+"\n")
	return err
}

// Read reads session bytes, dropping repeated Hello lines that precede the
// first session byte (yamux frames start with a zero version byte, never
// with Hello's first byte).
func (c *ServerConn) Read(p []byte) (int, error) {
	for !c.inSession {
		b, err := c.br.Peek(1)
		if err != nil {
			return 0, err
		}
		if b[0] != Hello[0] {
			c.inSession = true
			break
		}
		line, err := c.br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return 0, err
		}
		rest, isHello := bytes.CutPrefix(line, []byte(Hello))
		nonce := string(bytes.TrimSuffix(rest, []byte("\n")))
		if !isHello || nonce == "" || len(nonce) > maxNonce {
			// Not a Hello: hand it to the session as is, which will
			// reject it as a protocol error.
			c.inSession = true
			c.pending = append([]byte(nil), line...)
			break
		}
		if nonce != c.nonce {
			if err := c.answer(nonce); err != nil {
				return 0, err
			}
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.br.Read(p)
}

// Write writes session bytes.
func (c *ServerConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.rw.Write(p)
}

// Close closes the underlying stream.
func (c *ServerConn) Close() error { return c.rw.Close() }

// Nonce returns the nonce of the Hello last answered.
func (c *ServerConn) Nonce() string {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.nonce
}

// LocalAddr returns the underlying stream's local address, or a
// placeholder address when it has none.
func (c *ServerConn) LocalAddr() net.Addr {
	if a, ok := c.rw.(interface{ LocalAddr() net.Addr }); ok {
		return a.LocalAddr()
	}
	return chanAddr{}
}

// RemoteAddr returns the underlying stream's remote address, or a
// placeholder address when it has none.
func (c *ServerConn) RemoteAddr() net.Addr {
	if a, ok := c.rw.(interface{ RemoteAddr() net.Addr }); ok {
		return a.RemoteAddr()
	}
	return chanAddr{}
}

// SetDeadline delegates to the underlying stream; it returns
// os.ErrNoDeadline when the stream has no deadlines.
func (c *ServerConn) SetDeadline(t time.Time) error {
	if d, ok := c.rw.(interface{ SetDeadline(time.Time) error }); ok {
		return d.SetDeadline(t)
	}
	return os.ErrNoDeadline
}

// SetReadDeadline delegates to the underlying stream; it returns
// os.ErrNoDeadline when the stream has no deadlines.
func (c *ServerConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.rw.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return os.ErrNoDeadline
}

// SetWriteDeadline delegates to the underlying stream; it returns
// os.ErrNoDeadline when the stream has no deadlines.
func (c *ServerConn) SetWriteDeadline(t time.Time) error {
	if d, ok := c.rw.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return d.SetWriteDeadline(t)
	}
	return os.ErrNoDeadline
}

// chanAddr stands in for the address of a channel that has none (a
// virtio-serial port).
type chanAddr struct{}

func (chanAddr) Network() string { return "machinetop" }
func (chanAddr) String() string  { return PortName }

// ClientHandshake is the host side of the handshake (see the package
// comment). It writes Hello with a random 16-byte hex nonce, resends it every
// HelloInterval, and discards everything it reads until the line Ready +
// nonce + "\n" arrives (stale Ready lines with other nonces are skipped). It
// returns a net.Conn positioned after that line, with bytes read past it
// preserved, and the read and write deadlines of conn cleared. After timeout
// it returns an error wrapping ErrHandshakeTimeout; a read error other than
// a deadline (e.g. io.EOF) is returned at once.
func ClientHandshake(conn net.Conn, timeout time.Duration) (net.Conn, error) {
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, err
	}
	nonce := hex.EncodeToString(raw[:])
	hello := []byte(Hello + nonce + "\n")
	want := []byte(Ready + nonce + "\n")
	deadline := time.Now().Add(timeout)
	defer conn.SetDeadline(time.Time{})

	var acc []byte
	buf := make([]byte, 4096)
	for {
		now := time.Now()
		if !now.Before(deadline) {
			return nil, fmt.Errorf("%w after %v", ErrHandshakeTimeout, timeout)
		}
		if err := conn.SetWriteDeadline(deadline); err != nil {
			return nil, err
		}
		if _, err := conn.Write(hello); err != nil {
			if isTimeout(err) {
				return nil, fmt.Errorf("%w after %v (write blocked)", ErrHandshakeTimeout, timeout)
			}
			return nil, fmt.Errorf("proto: sending hello: %w", err)
		}
		next := now.Add(HelloInterval)
		if next.After(deadline) {
			next = deadline
		}
		if err := conn.SetReadDeadline(next); err != nil {
			return nil, err
		}
		for {
			n, err := conn.Read(buf)
			acc = append(acc, buf[:n]...)
			if i := bytes.Index(acc, want); i >= 0 {
				rest := append([]byte(nil), acc[i+len(want):]...)
				return &prefixConn{Conn: conn, prefix: rest}, nil
			}
			// Keep only a tail that could still begin the Ready line.
			if keep := len(want) - 1; len(acc) > keep {
				acc = append(acc[:0], acc[len(acc)-keep:]...)
			}
			if err != nil {
				if isTimeout(err) {
					break
				}
				return nil, fmt.Errorf("proto: waiting for ready: %w", err)
			}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// prefixConn returns prefix before reading from Conn.
type prefixConn struct {
	net.Conn
	mu     sync.Mutex
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		c.mu.Unlock()
		return n, nil
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}
