package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// download fetches in.URL into the cache, resuming a .part left by an
// earlier attempt (or an earlier process), and retries connection errors
// and 5xx answers a bounded number of times.
func (c *Cache) download(ctx context.Context, in Input) error {
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	delay := c.RetryDelay
	if delay <= 0 {
		delay = time.Second
	}
	restarted := false
	for i := 1; ; i++ {
		resumed, err := c.attempt(ctx, in, false)
		if err == nil {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("download %s from %s: %w", in.Name, in.URL, ctxErr)
		}
		if errors.Is(err, ErrDigestMismatch) {
			// A resumed prefix can be stale when the server's file changed
			// and it gave no validator for If-Range: one clean try settles it.
			if resumed && !restarted {
				restarted = true
				c.logger().Warn("resumed download has the wrong digest, downloading it again from the start", "input", in.Name, "url", in.URL)
				continue
			}
			return err
		}
		var re retryable
		if !errors.As(err, &re) || i >= attempts {
			return err
		}
		c.logger().Warn("download failed, retrying", "input", in.Name, "url", in.URL, "attempt", i, "of", attempts, "in", delay, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("download %s from %s: %w", in.Name, in.URL, ctx.Err())
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// attempt makes one request. It reports whether it appended to an existing
// .part, so a digest mismatch can be told apart from a stale prefix.
func (c *Cache) attempt(ctx context.Context, in Input, afterRestart bool) (resumed bool, err error) {
	final := c.Path(in.SHA256)
	part := final + ".part"
	valFile := part + ".validator"

	var offset int64
	if st, err := os.Stat(part); err == nil {
		offset = st.Size()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL, nil)
	if err != nil {
		return false, fmt.Errorf("download %s: bad URL %q: %w", in.Name, in.URL, err)
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		if v, err := os.ReadFile(valFile); err == nil && len(v) > 0 {
			req.Header.Set("If-Range", string(v))
		}
	}
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, retryable{fmt.Errorf("download %s from %s: %w", in.Name, in.URL, err)}
	}
	defer resp.Body.Close()

	total := int64(-1)
	switch code := resp.StatusCode; {
	case code == http.StatusPartialContent && offset > 0:
		start, size, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || start != offset {
			c.restart(part, valFile)
			return false, retryable{fmt.Errorf("download %s from %s: server sent range %q for a request from byte %d", in.Name, in.URL, resp.Header.Get("Content-Range"), offset)}
		}
		total = size
	case code == http.StatusOK:
		if offset > 0 {
			c.logger().Info("server ignored the range request, downloading from the start", "input", in.Name, "url", in.URL)
			offset = 0
		}
		total = resp.ContentLength
		saveValidator(valFile, resp.Header)
	case code == http.StatusRequestedRangeNotSatisfiable && offset > 0 && !afterRestart:
		c.logger().Info("server refused the range of the partial download, downloading from the start", "input", in.Name, "url", in.URL)
		c.restart(part, valFile)
		resp.Body.Close()
		return c.attempt(ctx, in, true)
	case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return false, retryable{fmt.Errorf("download %s from %s: server answered %s", in.Name, in.URL, resp.Status)}
	default:
		return false, fmt.Errorf("download %s from %s: server answered %s", in.Name, in.URL, resp.Status)
	}

	h := sha256.New()
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if offset > 0 {
		if err := hashPrefix(h, part, offset); err != nil {
			return false, fmt.Errorf("download %s: %w", in.Name, err)
		}
		flags = os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return false, fmt.Errorf("download %s: %w", in.Name, err)
	}
	p := newProgress(c.Progress, in.Name, offset, total)
	_, copyErr := io.Copy(io.MultiWriter(f, h, p), resp.Body)
	p.finish()
	// Keep what arrived, even on error: the next attempt resumes from it.
	if err := syncClose(f); err != nil {
		return false, fmt.Errorf("download %s: write %s: %w", in.Name, part, err)
	}
	if copyErr != nil {
		return false, retryable{fmt.Errorf("download %s from %s: %w", in.Name, in.URL, copyErr)}
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != in.SHA256 {
		c.restart(part, valFile)
		return offset > 0, fmt.Errorf("download %s from %s: %w: expected %s, got %s", in.Name, in.URL, ErrDigestMismatch, in.SHA256, got)
	}
	if err := renameSync(part, final); err != nil {
		return false, fmt.Errorf("download %s: %w", in.Name, err)
	}
	os.Remove(valFile)
	return offset > 0, nil
}

func (c *Cache) restart(part, valFile string) {
	for _, p := range []string{part, valFile} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.logger().Warn("remove partial download", "path", p, "err", err)
		}
	}
}

func hashPrefix(h io.Writer, path string, n int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.CopyN(h, f, n); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

// saveValidator remembers what If-Range needs to resume safely: a strong
// ETag, else Last-Modified (weak ETags are not allowed in If-Range).
func saveValidator(path string, hdr http.Header) {
	v := hdr.Get("ETag")
	if v == "" || strings.HasPrefix(v, "W/") {
		v = hdr.Get("Last-Modified")
	}
	if v == "" {
		os.Remove(path)
		return
	}
	os.WriteFile(path, []byte(v), 0o644) // best effort: resume still works without it
}

// parseContentRange reads "bytes START-END/SIZE" (SIZE may be "*", -1).
func parseContentRange(s string) (start, size int64, err error) {
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	rng, sz, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	first, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	if start, err = strconv.ParseInt(first, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("bad Content-Range %q", s)
	}
	size = -1
	if sz != "*" {
		if size, err = strconv.ParseInt(sz, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("bad Content-Range %q", s)
		}
	}
	return start, size, nil
}

// retryable marks errors worth another attempt (connection trouble, 5xx).
type retryable struct{ err error }

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }
