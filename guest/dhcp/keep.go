//go:build linux

package dhcp

import (
	"context"
	"errors"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// DefaultRetry is how long Keep waits after a failed exchange before it
// tries again.
const DefaultRetry = time.Minute

// Keeper keeps a lease alive (RFC 2131 §4.4.5): at T1 it asks the lease's
// server to renew it, again every Retry until T2, and from T2 on (also
// after the lease has ended, or when the server refused a renewal) it
// asks for a new lease. Every new lease is passed to Apply and then to
// Save.
type Keeper struct {
	Client *Client
	// Apply configures the interface from a new lease (old is the one it
	// replaces); Save records it. Either may be nil.
	Apply func(l, old *Lease) error
	Save  func(l *Lease) error
	// Retry is the wait after a failed exchange; DefaultRetry when zero.
	Retry time.Duration
	// Logf, if set, is told of every renewal and failure.
	Logf func(format string, args ...any)
}

func (k *Keeper) logf(format string, args ...any) {
	if k.Logf != nil {
		k.Logf(format, args...)
	}
}

// Keep keeps l until ctx ends, and returns ctx's error.
func (k *Keeper) Keep(ctx context.Context, l *Lease) error {
	if err := l.parse(); err != nil {
		return err
	}
	retry := k.Retry
	if retry <= 0 {
		retry = DefaultRetry
	}
	refused := false
	for {
		t1, t2, _ := l.times()
		if d := t1 - l.age(); d > 0 && !refused {
			if !sleep(ctx, d) {
				return ctx.Err()
			}
		}
		var (
			nl  *Lease
			err error
		)
		how := "renewed"
		if l.age() < t2 && !refused {
			nl, err = k.Client.Renew(ctx, l)
		} else {
			how = "new lease"
			nl, err = k.Client.Acquire(ctx)
		}
		var nak *nclient4.ErrNak
		refused = errors.As(err, &nak)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if refused {
				k.logf("dhcp: the server refused to renew the lease of %s; asking for a new one", l.Address())
				continue
			}
			k.logf("dhcp: %v; trying again in %v", err, retry)
			if !sleep(ctx, retry) {
				return ctx.Err()
			}
			continue
		}
		if k.Apply != nil {
			if err := k.Apply(nl, l); err != nil {
				k.logf("%v", err)
			}
		}
		if k.Save != nil {
			if err := k.Save(nl); err != nil {
				k.logf("dhcp: saving the lease: %v", err)
			}
		}
		k.logf("dhcp: %s: %s", how, nl)
		l = nl
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
