package source

import (
	"context"
	"fmt"
	"sync"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
)

// pull runs Store.Pull in this process, journalling its events like the
// CLI does (so the builds view lists it) and passing them to ev.
func pull(ctx context.Context, l *Live, ref string, ev func(progress.Event)) error {
	j, err := progress.Create(l.JournalDir(), "pull "+ref)
	if err != nil {
		return err
	}
	defer j.Close()
	var mu sync.Mutex
	emit := func(e progress.Event) {
		mu.Lock()
		defer mu.Unlock()
		j.Emit(e)
		ev(e)
	}
	res, err := l.Store.Pull(ctx, ref, images.PullOptions{Emit: emit})
	if err != nil {
		emit(progress.Event{Kind: progress.KindError, Error: err.Error()})
		return err
	}
	emit(progress.Event{Kind: progress.KindLog, Line: fmt.Sprintf("pulled %s: %d layers downloaded, %d already present", res.Image.Ref(), res.Fetched, res.Skipped)})
	emit(progress.Event{Kind: progress.KindDone, Digest: res.Image.Digest.String(), Tags: []string{res.Image.Ref()}})
	return nil
}
