// Package app is the layer both front ends (the CLI in cli/ and the
// dashboard in tui/) call for what spans machines and images: one data
// directory opened the same way, pulls whose progress goes to a journal
// and a callback (never to a terminal behind a front end's back), machine
// creation that pulls a missing image first, and the rule that an image
// machines were made from is not removed without force.
package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/machinetop/machinetop/images"
	"github.com/machinetop/machinetop/images/progress"
	"github.com/machinetop/machinetop/vm"
	"github.com/machinetop/machinetop/vm/driver"
	"github.com/machinetop/machinetop/vm/layout"
)

// App is one data directory's machines and images.
type App struct {
	Data     layout.Data
	Machines *vm.Manager
	Images   *images.Store
}

// Open opens the data directory (layout.DataDir) with backend booting its
// machines. It returns an error when the data directory or its image store
// cannot be opened.
func Open(backend driver.Backend) (*App, error) {
	d, err := layout.DataDir()
	if err != nil {
		return nil, err
	}
	return OpenAt(d, backend)
}

// OpenAt is Open for the data directory d.
func OpenAt(d layout.Data, backend driver.Backend) (*App, error) {
	st, err := images.Open(d.Images())
	if err != nil {
		return nil, err
	}
	a := &App{Data: d, Images: st}
	a.Machines = &vm.Manager{Data: d, Backend: backend, Images: StoreSource{st}}
	return a, nil
}

// StoreSource adapts an image store to vm.ImageSource: it resolves
// references among the stored images only (App.Create pulls first).
type StoreSource struct{ Store *images.Store }

// Rootfs resolves ref in the store and returns the image's name:tag, its
// manifest digest, its platform and the path of its flattened root
// filesystem tar, flattening it on first use. It returns the store's error
// (wrapping images.ErrNotFound) for an unknown image.
func (s StoreSource) Rootfs(ctx context.Context, ref string) (vm.ImageRootfs, error) {
	img, _, err := s.Store.Resolve(ref)
	if err != nil {
		return vm.ImageRootfs{}, err
	}
	p, err := s.Store.RootfsTar(ctx, img.Digest.String())
	if err != nil {
		return vm.ImageRootfs{}, err
	}
	return vm.ImageRootfs{Name: img.Ref(), Digest: img.Digest.String(), Tar: p, Platform: img.Platform}, nil
}

// Job is one pull or build: its events go to a journal under the data
// directory (which the dashboard's builds view lists) and to a watcher.
type Job struct {
	journal *progress.Journal
	watch   func(progress.Event)
}

// NewJob starts a journal titled title; watch (may be nil) sees every
// event too. It returns an error when the journal cannot be created.
func (a *App) NewJob(title string, watch func(progress.Event)) (*Job, error) {
	j, err := progress.Create(a.Data.Builds(), title)
	if err != nil {
		return nil, err
	}
	return &Job{journal: j, watch: watch}, nil
}

// Emit records e in the journal and passes it to the watcher. It is safe
// for concurrent use when the watcher is.
func (j *Job) Emit(e progress.Event) {
	j.journal.Emit(e)
	if j.watch != nil {
		j.watch(e)
	}
}

// Finish records the job's outcome (KindDone with digest and tags, or
// KindError for err) and closes the journal.
func (j *Job) Finish(digest string, tags []string, err error) {
	if err != nil {
		j.Emit(progress.Event{Kind: progress.KindError, Error: err.Error()})
	} else {
		j.Emit(progress.Event{Kind: progress.KindDone, Digest: digest, Tags: tags})
	}
	j.journal.Close()
}

// Pull fetches ref into the store as a journalled job, passing its events
// to watch (may be nil). It returns the stored image, or the pull's error.
func (a *App) Pull(ctx context.Context, ref string, opts images.PullOptions, watch func(progress.Event)) (images.Image, error) {
	job, err := a.NewJob("pull "+ref, watch)
	if err != nil {
		return images.Image{}, err
	}
	opts.Emit = job.Emit
	res, err := a.Images.Pull(ctx, ref, opts)
	if err != nil {
		job.Finish("", nil, err)
		return images.Image{}, err
	}
	job.Emit(progress.Event{Kind: progress.KindLog, Line: fmt.Sprintf("pulled %s: %d layers downloaded (%s), %d already present",
		res.Image.Ref(), res.Fetched, vm.FormatSize(uint64(res.FetchedBytes)), res.Skipped)})
	job.Finish(res.Image.Digest.String(), []string{res.Image.Ref()}, nil)
	return res.Image, nil
}

// Create makes a machine (see vm.Manager.Create), pulling its image first
// when the store lacks it and the reference names a registry image, as
// `docker run` does, for the machine's architecture (linux/<opts.Arch>);
// the pull's events go to watch (may be nil).
func (a *App) Create(ctx context.Context, opts vm.CreateOptions, watch func(progress.Event)) (*vm.Config, error) {
	img, _, err := a.Images.Resolve(opts.Image)
	if errors.Is(err, images.ErrNotFound) && images.LooksPullable(opts.Image) {
		arch, aerr := vm.ParseArch(opts.Arch)
		if aerr != nil {
			return nil, aerr
		}
		plat := images.LinuxPlatform(arch)
		var perr error
		img, perr = a.Pull(ctx, opts.Image, images.PullOptions{Platform: &plat}, watch)
		if perr != nil {
			return nil, fmt.Errorf("%w; pulling it failed: %v", err, perr)
		}
		opts.Image, err = img.Ref(), nil
	}
	if err == nil && watch != nil {
		// The first machine of an image flattens its layers; say so when
		// that takes more than a moment.
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-time.After(time.Second):
				watch(progress.Event{Kind: progress.KindLog, Time: time.Now(), Line: "flattening " + img.Ref() + " into a root filesystem (once per image)"})
			case <-done:
			}
		}()
		_, err := a.Images.RootfsTar(ctx, img.Digest.String())
		close(done)
		wg.Wait()
		if err != nil {
			return nil, err
		}
	}
	return a.Machines.Create(ctx, opts)
}

// ErrImageInUse is returned (wrapped, naming the machines) by RemoveImage
// for an image machines were made from.
var ErrImageInUse = errors.New("image is in use")

// ImageUsers returns the names of the machines made from img (by digest
// or by its name:tag), sorted.
func (a *App) ImageUsers(img images.Image) ([]string, error) {
	return a.Machines.MachinesUsingImage(img.Digest.String(), img.Ref())
}

// RemoveImage deletes the image ref (with all its tags). Unless force is
// set it refuses, with an error wrapping ErrImageInUse, an image machines
// were made from (the machines would keep running from their own disks,
// but could not be re-created).
func (a *App) RemoveImage(ref string, force bool) error {
	if img, _, err := a.Images.Resolve(ref); err == nil && !force {
		used, err := a.ImageUsers(img)
		if err != nil {
			return err
		}
		if len(used) > 0 {
			return fmt.Errorf("%w: image %s is used by %s: delete those machines first, or pass --force (the machines keep running from their own disks)", ErrImageInUse, ref, strings.Join(used, ", "))
		}
	}
	return a.Images.Remove(ref)
}
