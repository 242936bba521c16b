package netd

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
)

// Hello is what a supervisor sends first on a new connection to the
// network: the machine that joins. The network answers with a reply; on
// success the connection then carries the machine's Ethernet frames.
type Hello struct {
	// Name is the machine's name, answered in DNS as Name.machine.
	Name string `json:"name"`
	// IP is the machine's address (Allocate), given to MAC by DHCP.
	IP string `json:"ip"`
	// MAC is the machine's network interface address (MACFor).
	MAC string `json:"mac"`
}

// reply answers a Hello: Error is empty when the machine joined.
type reply struct {
	Error string `json:"error,omitempty"`
}

// maxMessage bounds a Hello or a reply, in bytes.
const maxMessage = 64 << 10

// writeMessage writes v as JSON prefixed with its length (4 bytes, big
// endian), the framing the connection carries frames in afterwards.
func writeMessage(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// readMessage reads one message of writeMessage into v, reading nothing
// beyond it (the connection is handed on afterwards).
func readMessage(r io.Reader, v any) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxMessage {
		return fmt.Errorf("message of %d bytes, more than %d", size, maxMessage)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
