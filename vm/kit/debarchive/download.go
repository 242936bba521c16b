package debarchive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// stallTimeout is how long a transfer may go without receiving a byte
// before it is abandoned (a partial download is kept for resuming).
const stallTimeout = time.Minute

// progressEvery is the least time between two Progress reports of one
// download.
const progressEvery = 2 * time.Second

// statusError is an HTTP answer other than the one asked for.
type statusError struct {
	url    string
	code   int
	status string
}

func (e *statusError) Error() string { return fmt.Sprintf("%s answered %s", e.url, e.status) }

var errStalled = errors.New("transfer stalled")

// transfer is a response body that cancels its request when no data comes
// for stallTimeout.
type transfer struct {
	resp   *http.Response
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	url    string
}

// open sends a GET for u, asking for the bytes from offset on when offset
// is above zero. Any status is returned; the caller checks it.
func (c *Client) open(ctx context.Context, u string, offset int64) (*transfer, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := &transfer{ctx: ctx, cancel: cancel, url: u}
	t.timer = time.AfterFunc(stallTimeout, func() { cancel(errStalled) })
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.timer.Stop()
		cancel(nil)
		return nil, err
	}
	req.Header.Set("User-Agent", "machinetop (Debian archive client)")
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		t.timer.Stop()
		cancel(nil)
		return nil, t.explain(err)
	}
	t.resp = resp
	return t, nil
}

func (t *transfer) explain(err error) error {
	if context.Cause(t.ctx) == errStalled {
		return fmt.Errorf("%s: no data for %s: %w", t.url, stallTimeout, errStalled)
	}
	return err
}

func (t *transfer) Read(p []byte) (int, error) {
	n, err := t.resp.Body.Read(p)
	if n > 0 {
		t.timer.Reset(stallTimeout)
	}
	if err != nil && err != io.EOF {
		err = t.explain(err)
	}
	return n, err
}

func (t *transfer) Close() {
	t.timer.Stop()
	t.resp.Body.Close()
	t.cancel(nil)
}

// getSmall returns the body of u, which must answer 200 with at most
// limit bytes.
func (c *Client) getSmall(ctx context.Context, u string, limit int64) ([]byte, error) {
	t, err := c.open(ctx, u, 0)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	if t.resp.StatusCode != http.StatusOK {
		return nil, &statusError{url: u, code: t.resp.StatusCode, status: t.resp.Status}
	}
	b, err := io.ReadAll(io.LimitReader(t, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", u, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", u, limit)
	}
	return b, nil
}

// digestMismatch says what a finished download had instead of its digest.
type digestMismatch struct {
	want     FileDigest
	size     int64
	sum      string
	complete bool // false when the server sent more bytes than want.Size
}

func (e *digestMismatch) Error() string {
	if !e.complete {
		return fmt.Sprintf("the server sent more than the %d bytes expected", e.want.Size)
	}
	if e.size != e.want.Size {
		return fmt.Sprintf("got %d bytes, want %d", e.size, e.want.Size)
	}
	return fmt.Sprintf("got SHA-256 %s, want %s", e.sum, e.want.SHA256)
}

// download fetches u into dst, which appears only once it has want's size
// and SHA-256. Bytes go first to a partial file named after dst and the
// digest, which a later call resumes with a Range request; if a resumed
// file does not verify it is downloaded once more from the start. check
// names the step for a *VerificationError.
func (c *Client) download(ctx context.Context, u, dst string, want FileDigest, check Check) error {
	if len(want.SHA256) != 64 {
		return fmt.Errorf("debarchive: no SHA-256 for %s", u)
	}
	partial := dst + ".partial-" + want.SHA256[:16]
	if old, _ := filepath.Glob(escapeGlob(dst) + ".partial-*"); len(old) > 0 {
		for _, o := range old {
			if o != partial {
				os.Remove(o)
			}
		}
	}
	for attempt := 0; ; attempt++ {
		resumed, err := c.downloadOnce(ctx, u, partial, want)
		var mm *digestMismatch
		if errors.As(err, &mm) {
			os.Remove(partial)
			if resumed && attempt == 0 {
				c.log("the resumed download of %s did not verify (%v); downloading it again from the start", u, mm)
				continue
			}
			return &VerificationError{Check: check, File: u, Err: err, Hint: mirrorHint}
		}
		if err != nil {
			return err
		}
		if err := os.Rename(partial, dst); err != nil {
			return err
		}
		return syncDir(filepath.Dir(dst))
	}
}

// downloadOnce brings partial up to want.Size bytes from u and checks it;
// resumed says whether it started from bytes already there. A
// *digestMismatch error means the bytes are wrong; any other error leaves
// partial as it is for a later resume.
func (c *Client) downloadOnce(ctx context.Context, u, partial string, want FileDigest) (resumed bool, err error) {
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	have := fi.Size()
	if have > want.Size {
		have = 0
	}
	h := sha256.New()
	if have > 0 {
		if _, err := io.CopyN(h, f, have); err != nil {
			return false, fmt.Errorf("reading %s: %w", partial, err)
		}
	}
	resumed = have > 0
	if have < want.Size {
		if have, err = c.fetchRest(ctx, u, f, h, have, want.Size, filepath.Base(partial)); err != nil {
			return resumed, err
		}
	}
	if have > want.Size {
		return resumed, &digestMismatch{want: want}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if have != want.Size || sum != want.SHA256 {
		return resumed, &digestMismatch{want: want, size: have, sum: sum, complete: true}
	}
	if err := f.Sync(); err != nil {
		return resumed, err
	}
	return resumed, nil
}

// fetchRest appends the bytes of u from offset have on to f (hashing them
// into h, which holds f's first have bytes) and returns f's new length. A
// server that ignores the Range, or cannot satisfy it, gets the whole file
// asked for instead. It stops one byte past size, so a too-long answer is
// seen without reading it all.
func (c *Client) fetchRest(ctx context.Context, u string, f *os.File, h hash.Hash, have, size int64, name string) (int64, error) {
	restart := func() error {
		have = 0
		h.Reset()
		return f.Truncate(0)
	}
	var t *transfer
	for {
		var err error
		if t, err = c.open(ctx, u, have); err != nil {
			return have, err
		}
		code := t.resp.StatusCode
		if have > 0 && code == http.StatusPartialContent && contentRangeStart(t.resp.Header.Get("Content-Range")) == have {
			c.log("resuming %s at %d of %d bytes", u, have, size)
			break
		}
		if code == http.StatusOK {
			if have > 0 {
				if err := restart(); err != nil {
					t.Close()
					return have, err
				}
			}
			c.log("fetching %s", u)
			break
		}
		t.Close()
		if have > 0 && (code == http.StatusPartialContent || code == http.StatusRequestedRangeNotSatisfiable) {
			// An answer for other bytes than asked for: start over.
			if err := restart(); err != nil {
				return have, err
			}
			continue
		}
		return have, &statusError{url: u, code: code, status: t.resp.Status}
	}
	defer t.Close()
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return have, err
	}
	c.report(name, have, size)
	last := time.Now()
	buf := make([]byte, 256<<10)
	r := io.LimitReader(t, size-have+1)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := f.Write(buf[:n]); werr != nil {
				return have, werr
			}
			h.Write(buf[:n])
			have += int64(n)
			if time.Since(last) >= progressEvery {
				c.report(name, have, size)
				last = time.Now()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return have, fmt.Errorf("downloading %s: %w", u, err)
		}
	}
	c.report(name, have, size)
	return have, nil
}

func (c *Client) report(partialName string, done, total int64) {
	if c.Progress == nil {
		return
	}
	name, _, _ := strings.Cut(partialName, ".partial-")
	c.Progress(Progress{File: name, Done: done, Total: total})
}

// contentRangeStart returns the first byte position of a Content-Range
// header "bytes START-END/TOTAL" (RFC 9110 §14.4), or -1.
func contentRangeStart(v string) int64 {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return -1
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(start), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// escapeGlob quotes the pattern characters of p for filepath.Glob.
func escapeGlob(p string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`).Replace(p)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
