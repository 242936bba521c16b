package progress

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// Journal appends one job's events to DIR/<job>.jsonl. Its Emit is safe
// for concurrent use.
type Journal struct {
	mu   sync.Mutex
	f    *os.File
	job  string
	path string
}

// Create starts a journal for a new job in dir (created 0700 if needed)
// and writes its KindStart event with title. The job ID sorts by start
// time: "20261129-113205-<6 hex>".
func Create(dir, title string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the build journal directory: %w", err)
	}
	b := make([]byte, 3)
	rand.Read(b)
	job := time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
	path := filepath.Join(dir, job+".jsonl")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	j := &Journal{f: f, job: job, path: path}
	j.Emit(Event{Kind: KindStart, Title: title})
	return j, nil
}

// Job returns the journal's job ID.
func (j *Journal) Job() string { return j.job }

// Emit stamps e with the time and job ID (when unset) and appends it as
// one line. Each line is written with a single write(2) in O_APPEND mode,
// so a concurrent reader never sees half a line other than at the end.
func (j *Journal) Emit(e Event) error {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Job = j.job
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return os.ErrClosed
	}
	_, err = j.f.Write(append(b, '\n'))
	return err
}

// Close closes the journal file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// Summary describes a job from its journal.
type Summary struct {
	Job     string
	Title   string
	Started time.Time
	// State is "running", "done" or "failed". A job whose process died
	// without a final event stays "running".
	State  string
	Error  string
	Digest string
	Events int // number of events read
}

// List summarises every job in dir, newest first. A missing dir means no
// jobs.
func List(dir string) ([]Summary, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".jsonl") {
			continue
		}
		s := Summary{Job: strings.TrimSuffix(name, ".jsonl"), State: "running"}
		evs, _, err := ReadFrom(filepath.Join(dir, name), 0)
		if err != nil {
			continue
		}
		for _, ev := range evs {
			s.Events++
			switch ev.Kind {
			case KindStart:
				s.Title, s.Started = ev.Title, ev.Time
			case KindDone:
				s.State, s.Digest = "done", ev.Digest
			case KindError:
				s.State, s.Error = "failed", ev.Error
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Job > out[b].Job })
	return out, nil
}

// ReadFrom reads the complete lines of a journal file starting at byte
// offset off and returns their events and the offset after the last
// complete line (pass it to the next call to read only what is new).
// Malformed lines are skipped.
func ReadFrom(path string, off int64) ([]Event, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, off, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, off, err
	}
	br := bufio.NewReader(f)
	var evs []Event
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			// A partial last line is read again next time.
			return evs, off, nil
		}
		off += int64(len(line))
		var e Event
		if json.Unmarshal(line, &e) == nil {
			evs = append(evs, e)
		}
	}
}

// Follow sends the events of job in dir, from the first, and then new ones
// as they are appended (polling every interval), until ctx ends or the job
// ends (after its KindDone or KindError event is sent). The channel is
// closed then.
func Follow(ctx context.Context, dir, job string, interval time.Duration) <-chan Event {
	ch := make(chan Event, 64)
	go func() {
		defer close(ch)
		path := filepath.Join(dir, job+".jsonl")
		var off int64
		for {
			evs, next, _ := ReadFrom(path, off)
			off = next
			for _, e := range evs {
				select {
				case ch <- e:
				case <-ctx.Done():
					return
				}
				if e.Kind == KindDone || e.Kind == KindError {
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
			}
		}
	}()
	return ch
}
