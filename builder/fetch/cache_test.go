package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// server is a loopback HTTPS server that records every request it sees.
type server struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string // Range header of each request, "" when absent
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ranges...)
}

// serveFile serves content with an ETag, so Range and If-Range work as on a
// real mirror.
func serveFile(content []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"fixture-v1"`)
		http.ServeContent(w, r, "f", time.Unix(1700000000, 0), bytes.NewReader(content))
	}
}

func fixture(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func newTestCache(t *testing.T, s *server) (*Cache, *bytes.Buffer) {
	t.Helper()
	c, err := NewCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if s != nil {
		c.Client = s.Client()
	}
	var logs bytes.Buffer
	c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	c.RetryDelay = time.Millisecond
	return c, &logs
}

func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes, want %d bytes of the fixture", path, len(got), len(want))
	}
}

func TestGetDownloadsThenHitsCache(t *testing.T) {
	content, sum := fixture(t, 300<<10)
	s := newServer(t, serveFile(content))
	c, _ := newTestCache(t, s)
	ctx := context.Background()

	path, err := c.Get(ctx, "k3s binary", s.URL+"/k3s", sum)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(c.Dir, "sha256", sum); path != want {
		t.Errorf("path = %s, want %s", path, want)
	}
	assertFile(t, path, content)
	if n := len(s.requests()); n != 1 {
		t.Fatalf("fresh download made %d requests, want 1", n)
	}

	// Same process, and a new process (new Cache on the same dir): no request.
	again, _ := newTestCache(t, s)
	again.Dir = c.Dir
	for _, cache := range []*Cache{c, again} {
		if p, err := cache.Get(ctx, "k3s binary", s.URL+"/k3s", strings.ToUpper(sum)); err != nil || p != path {
			t.Fatalf("cached Get = %q, %v; want %q", p, err, path)
		}
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("cache hits made %d more requests, want 0", n-1)
	}
	if entries, _ := os.ReadDir(filepath.Join(c.Dir, "sha256")); len(entries) != 1 {
		t.Errorf("cache dir has %d entries, want only the file (no .part left)", len(entries))
	}
}

func TestGetRefetchesCorruptEntry(t *testing.T) {
	content, sum := fixture(t, 64<<10)
	s := newServer(t, serveFile(content))
	c, logs := newTestCache(t, s)
	if err := os.WriteFile(c.Path(sum), []byte("bit rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	path, err := c.Get(context.Background(), "base image", s.URL+"/img", sum)
	if err != nil {
		t.Fatal(err)
	}
	assertFile(t, path, content)
	if n := len(s.requests()); n != 1 {
		t.Errorf("requests = %d, want 1 (the re-fetch)", n)
	}
	if !strings.Contains(logs.String(), "corrupt") {
		t.Errorf("corrupt entry was not logged; log:\n%s", logs)
	}
}

func TestGetWrongChecksum(t *testing.T) {
	content, _ := fixture(t, 10<<10)
	_, otherSum := fixture(t, 10)
	s := newServer(t, serveFile(content))
	c, _ := newTestCache(t, s)
	url := s.URL + "/k3s"

	_, err := c.Get(context.Background(), "k3s binary", url, otherSum)
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	sum := sha256.Sum256(content)
	for _, part := range []string{"k3s binary", url, otherSum, hex.EncodeToString(sum[:])} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %q", err, part)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(c.Dir, "sha256")); len(entries) != 0 {
		t.Errorf("files left after a digest mismatch: %v", entries)
	}
}

func TestGetOfflineMissing(t *testing.T) {
	_, sum := fixture(t, 10)
	s := newServer(t, serveFile(nil))
	c, _ := newTestCache(t, s)
	c.Offline = true

	_, err := c.GetInput(context.Background(), Input{Name: "k3s binary", URL: s.URL + "/k3s", SHA256: sum, Flag: "--k3s-binary FILE"})
	if !errors.Is(err, ErrNotCached) {
		t.Fatalf("err = %v, want ErrNotCached", err)
	}
	want := "k3s binary not in cache and --offline given: pass --k3s-binary FILE or run once without --offline"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("offline Get made %d requests", n)
	}
}

func TestGetOfflineHit(t *testing.T) {
	content, sum := fixture(t, 1000)
	c, _ := newTestCache(t, nil)
	if _, err := c.Put(context.Background(), bytes.NewReader(content), ""); err != nil {
		t.Fatal(err)
	}
	c.Offline = true
	path, err := c.Get(context.Background(), "airgap images", "https://127.0.0.1:1/never", sum)
	if err != nil {
		t.Fatal(err)
	}
	assertFile(t, path, content)
}

func TestPut(t *testing.T) {
	content, sum := fixture(t, 5000)
	_, otherSum := fixture(t, 1)
	tests := []struct {
		name    string
		digest  string
		wantErr error
	}{
		{"own digest", "", nil},
		{"expected digest", sum, nil},
		{"wrong digest", otherSum, ErrDigestMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newTestCache(t, nil)
			path, err := c.Put(context.Background(), bytes.NewReader(content), tt.digest)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			entries, _ := os.ReadDir(filepath.Join(c.Dir, "sha256"))
			if tt.wantErr != nil {
				if len(entries) != 0 {
					t.Errorf("files left after a failed Put: %v", entries)
				}
				return
			}
			if path != c.Path(sum) {
				t.Errorf("path = %s, want %s", path, c.Path(sum))
			}
			assertFile(t, path, content)
		})
	}
}

func TestVerifyFile(t *testing.T) {
	content, sum := fixture(t, 100)
	_, otherSum := fixture(t, 1)
	path := filepath.Join(t.TempDir(), "k3s")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile("k3s binary", path, sum); err != nil {
		t.Errorf("good file: %v", err)
	}
	if err := VerifyFile("k3s binary", path, otherSum); !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), path) {
		t.Errorf("bad file: err = %v, want a mismatch naming %s", err, path)
	}
	if err := VerifyFile("k3s binary", path, "abc"); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("bad digest: err = %v", err)
	}
}

func TestNewCacheDefaultsToUserCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	c, err := NewCache("")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(os.Getenv("XDG_CACHE_HOME"), "homecloud"); c.Dir != want {
		t.Errorf("Dir = %s, want %s", c.Dir, want)
	}
}
