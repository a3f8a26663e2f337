package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// FetchUnpinned downloads a small file whose digest cannot be known in
// advance (a signed InRelease) into memory, with the same bounded retries as
// Get. It is not cached, and the caller must verify it (e.g. its
// signature). Offline it fails with ErrNotCached.
func (c *Cache) FetchUnpinned(ctx context.Context, name, url string, maxBytes int64) ([]byte, error) {
	if c.Offline {
		return nil, fmt.Errorf("%s %w and --offline given: run once without --offline", name, ErrNotCached)
	}
	attempts := c.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	delay := c.RetryDelay
	if delay <= 0 {
		delay = time.Second
	}
	for i := 1; ; i++ {
		b, err := c.fetchOnce(ctx, name, url, maxBytes)
		if err == nil {
			return b, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("download %s from %s: %w", name, url, ctxErr)
		}
		var re retryable
		if !errors.As(err, &re) || i >= attempts {
			return nil, err
		}
		c.logger().Warn("download failed, retrying", "input", name, "url", url, "attempt", i, "of", attempts, "in", delay, "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("download %s from %s: %w", name, url, ctx.Err())
		case <-time.After(delay):
		}
		delay *= 2
	}
}

func (c *Cache) fetchOnce(ctx context.Context, name, url string, maxBytes int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("download %s: bad URL %q: %w", name, url, err)
	}
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, retryable{fmt.Errorf("download %s from %s: %w", name, url, err)}
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusOK:
	case code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests:
		return nil, retryable{fmt.Errorf("download %s from %s: server answered %s", name, url, resp.Status)}
	default:
		return nil, fmt.Errorf("download %s from %s: server answered %s", name, url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBytes+1))
	if err != nil {
		return nil, retryable{fmt.Errorf("download %s from %s: %w", name, url, err)}
	}
	if int64(len(b)) > maxBytes {
		return nil, fmt.Errorf("download %s from %s: larger than the %d bytes allowed", name, url, maxBytes)
	}
	return b, nil
}
