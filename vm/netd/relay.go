package netd

import (
	"encoding/binary"
	"fmt"
	"io"
)

// RelayDatagrams copies Ethernet frames between dgram, a datagram socket
// carrying one frame per datagram (the end of a socketpair whose other end
// a hypervisor holds, as the Virtualization framework's file-handle
// network attachment wants), and stream, a connection to the network
// (Connect), whose frames are length-prefixed. It returns when either side
// fails or closes (closing either ends it), having closed both; the
// error is the first side's. Both may be *os.File: a read of a datagram
// socket returns one datagram.
func RelayDatagrams(dgram, stream io.ReadWriteCloser) error {
	errc := make(chan error, 2)
	go func() {
		buf := make([]byte, 4+65536)
		for {
			n, err := dgram.Read(buf[4:])
			if err != nil {
				errc <- err
				return
			}
			binary.BigEndian.PutUint32(buf, uint32(n))
			if _, err := stream.Write(buf[:4+n]); err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		var size [4]byte
		for {
			if _, err := io.ReadFull(stream, size[:]); err != nil {
				errc <- err
				return
			}
			n := binary.BigEndian.Uint32(size[:])
			if n > uint32(len(buf)) {
				errc <- fmt.Errorf("machine network: a frame of %d bytes", n)
				return
			}
			if _, err := io.ReadFull(stream, buf[:n]); err != nil {
				errc <- err
				return
			}
			if _, err := dgram.Write(buf[:n]); err != nil {
				errc <- err
				return
			}
		}
	}()
	err := <-errc
	dgram.Close()
	stream.Close()
	<-errc
	return err
}
