package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGetResumesAfterDroppedConnection(t *testing.T) {
	content, sum := fixture(t, 256<<10)
	const cut = 100_000
	var calls atomic.Int32
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) > 1 {
			serveFile(content)(w, r)
			return
		}
		// First request: promise the whole file, send cut bytes, hang up.
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nETag: \"fixture-v1\"\r\n\r\n", len(content))
		buf.Write(content[:cut])
		buf.Flush()
	})
	c, _ := newTestCache(t, s)

	path, err := c.Get(context.Background(), "base image", s.URL+"/img", sum)
	if err != nil {
		t.Fatal(err)
	}
	assertFile(t, path, content)
	got := s.requests()
	if len(got) != 2 || got[0] != "" || got[1] != fmt.Sprintf("bytes=%d-", cut) {
		t.Errorf("Range headers seen = %q, want [\"\" \"bytes=%d-\"]", got, cut)
	}
}

// A .part from an earlier run is resumed; the tests below check the server
// answers a resume can get. The stale bytes are not the fixture's, so a
// build that appended to them would fail its digest check.
func TestGetPartialRestarts(t *testing.T) {
	content, sum := fixture(t, 64<<10)
	tests := []struct {
		name     string
		part     []byte
		handler  http.HandlerFunc
		wantReqs int // a clean restart wastes no download
	}{
		{"server ignores Range", []byte("stale prefix"), func(w http.ResponseWriter, r *http.Request) {
			w.Write(content) // always 200 with the whole body
		}, 1},
		{"range not satisfiable (416)", bytes.Repeat([]byte("x"), len(content)+10), serveFile(content), 2},
		{"If-Range validator changed", []byte("old version"), func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"fixture-v2"`)
			http.ServeContent(w, r, "f", time.Unix(1700000000, 0), bytes.NewReader(content))
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, tt.handler)
			c, _ := newTestCache(t, s)
			part := c.Path(sum) + ".part"
			if err := os.WriteFile(part, tt.part, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(part+".validator", []byte(`"fixture-v1"`), 0o644); err != nil {
				t.Fatal(err)
			}
			path, err := c.Get(context.Background(), "base image", s.URL+"/img", sum)
			if err != nil {
				t.Fatal(err)
			}
			assertFile(t, path, content)
			if got := s.requests(); len(got) == 0 || got[0] != fmt.Sprintf("bytes=%d-", len(tt.part)) {
				t.Errorf("first request's Range = %q, want a resume from byte %d", got, len(tt.part))
			} else if len(got) != tt.wantReqs {
				t.Errorf("requests = %d (Range %q), want %d", len(got), got, tt.wantReqs)
			}
			if _, err := os.Stat(part); !errors.Is(err, os.ErrNotExist) {
				t.Errorf(".part left behind: %v", err)
			}
		})
	}
}

func TestGetRetries(t *testing.T) {
	content, sum := fixture(t, 1000)
	tests := []struct {
		name      string
		failFirst int // requests answered with status before serving the file
		status    int
		wantErr   bool
		wantReqs  int
	}{
		{"503 then success", 1, http.StatusServiceUnavailable, false, 2},
		{"503 every time", 10, http.StatusServiceUnavailable, true, 3},
		{"404 is not retried", 10, http.StatusNotFound, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if int(calls.Add(1)) <= tt.failFirst {
					http.Error(w, "no", tt.status)
					return
				}
				serveFile(content)(w, r)
			})
			c, _ := newTestCache(t, s)
			_, err := c.Get(context.Background(), "k3s binary", s.URL+"/k3s", sum)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprint(tt.status)) {
				t.Errorf("error %q does not give the status %d", err, tt.status)
			}
			if n := len(s.requests()); n != tt.wantReqs {
				t.Errorf("requests = %d, want %d", n, tt.wantReqs)
			}
		})
	}
}

func TestGetCancelStopsSlowDownload(t *testing.T) {
	_, sum := fixture(t, 10)
	started := make(chan struct{})
	release := make(chan struct{})
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		close(started)
		select { // never finish: only the client can end this
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before s.Close
	c, _ := newTestCache(t, s)
	c.RetryDelay = time.Hour // a retry would hang the test: there must be none

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-started
		cancel()
	}()
	_, err := c.Get(ctx, "airgap images", s.URL+"/slow", sum)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("requests = %d, want 1", n)
	}
}

func TestGetProgress(t *testing.T) {
	content, sum := fixture(t, 2<<20)
	s := newServer(t, serveFile(content))
	c, _ := newTestCache(t, s)
	var out bytes.Buffer
	c.Progress = &out
	if _, err := c.Get(context.Background(), "k3s binary", s.URL+"/k3s", sum); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.Contains(got, "k3s binary: 2.0 MiB / 2.0 MiB (100%)") || !strings.HasSuffix(got, "\n") {
		t.Errorf("progress output %q lacks the final 100%% line", got)
	}
	if strings.Count(got, "\n") != 1 {
		t.Errorf("progress output %q should be one line", got)
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in          string
		start, size int64
		bad         bool
	}{
		{"bytes 100-199/200", 100, 200, false},
		{"bytes 0-9/*", 0, -1, false},
		{"bytes */200", 0, 0, true},
		{"items 1-2/3", 0, 0, true},
		{"", 0, 0, true},
	}
	for _, tt := range tests {
		start, size, err := parseContentRange(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && (start != tt.start || size != tt.size)) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tt.in, start, size, err)
		}
	}
}

func TestFetchUnpinned(t *testing.T) {
	content, _ := fixture(t, 4000)
	var calls atomic.Int32
	s := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "busy", http.StatusBadGateway)
			return
		}
		serveFile(content)(w, r)
	})
	c, _ := newTestCache(t, s)
	ctx := context.Background()

	got, err := c.FetchUnpinned(ctx, "InRelease", s.URL+"/InRelease", 4000)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("FetchUnpinned = %d bytes, %v; want the fixture after one retry", len(got), err)
	}
	if _, err := c.FetchUnpinned(ctx, "InRelease", s.URL+"/InRelease", 3999); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized answer: err = %v", err)
	}
	c.Offline = true
	before := len(s.requests())
	if _, err := c.FetchUnpinned(ctx, "InRelease", s.URL+"/InRelease", 4000); !errors.Is(err, ErrNotCached) {
		t.Errorf("offline: err = %v, want ErrNotCached", err)
	}
	if n := len(s.requests()) - before; n != 0 {
		t.Errorf("offline FetchUnpinned made %d requests", n)
	}
}
