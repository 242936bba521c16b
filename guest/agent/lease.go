//go:build linux

package agent

import (
	"context"
	"errors"
	"io/fs"
	"log"
	"os"

	"github.com/machinetop/machinetop/guest/dhcp"
	"github.com/machinetop/machinetop/guest/proto"
)

// keepLease renews the DHCP lease /init got (proto.LeaseFile) until ctx
// ends, applying and recording every renewal. Without a lease file (no
// DHCP server answered at boot) there is nothing to keep.
func keepLease(ctx context.Context) {
	l, err := dhcp.Load(proto.LeaseFile)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Printf("dhcp: %v", err)
		}
		return
	}
	host, _ := os.Hostname()
	k := &dhcp.Keeper{
		Client: &dhcp.Client{Interface: l.Interface, Hostname: host},
		Apply:  dhcp.Apply,
		Save:   func(l *dhcp.Lease) error { return l.Save(proto.LeaseFile) },
		Logf:   log.Printf,
	}
	k.Keep(ctx, l)
}

// currentLease is the lease the guest's network runs on, nil for none.
func currentLease() *proto.Lease {
	l, err := dhcp.Load(proto.LeaseFile)
	if err != nil {
		return nil
	}
	return l.Info()
}
