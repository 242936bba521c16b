package proto

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Splice carries an OpDial connection: it copies between a TCP connection
// and a stream until both directions have ended. What arrives from r (the
// stream's reader, which may hold bytes already buffered after the
// Response line) goes to tcp, and its end shuts tcp down for writing;
// what tcp sends goes to stream, and its end closes stream, which for a
// yamux stream is a half-close: the other way keeps flowing. An error on
// either side (a reset, a stream gone with its session) closes tcp, so
// the other direction ends too. Splice returns once both copies are done;
// the caller closes both ends afterwards.
func Splice(tcp *net.TCPConn, stream net.Conn, r io.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if _, err := io.Copy(tcp, r); err != nil {
			tcp.Close()
			return
		}
		tcp.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		_, err := io.Copy(stream, tcp)
		stream.Close()
		if err != nil && !errors.Is(err, net.ErrClosed) {
			tcp.Close()
		}
	}()
	wg.Wait()
}
