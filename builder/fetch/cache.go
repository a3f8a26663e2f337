// Package fetch downloads the builder's inputs (base image, k3s, .debs) and
// keeps them in a cache keyed by SHA-256, so a file is only ever trusted
// after its digest matched and a second build needs no network.
//
// Layout: <Dir>/sha256/<hex> holds verified files; <hex>.part is an
// interrupted download that the next attempt resumes with an HTTP Range
// request, and <hex>.part.validator remembers the server's ETag or
// Last-Modified so the resume is sent with If-Range.
package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrNotCached is returned (wrapped) when an input is missing from the cache
// and the cache is offline.
var ErrNotCached = errors.New("not in cache")

// ErrDigestMismatch is returned (wrapped) when downloaded or supplied bytes do
// not hash to the expected SHA-256.
var ErrDigestMismatch = errors.New("sha256 mismatch")

// Input names one file the builder needs.
type Input struct {
	// Name is what the user calls it ("k3s binary"); it appears in errors.
	Name string
	// URL is where to download it from; empty means it can only come from
	// the cache or a local file.
	URL string
	// SHA256 is the expected digest, lower-case hex.
	SHA256 string
	// Flag is the command-line flag, with its argument, that supplies the
	// input locally ("--k3s-binary FILE"); the offline error names it.
	Flag string
}

// Cache is a digest-keyed download cache. The zero value is not usable: set
// Dir (or use NewCache). A Cache is safe for concurrent use.
type Cache struct {
	Dir      string
	Client   *http.Client // nil means http.DefaultClient
	Offline  bool         // never touch the network
	Progress io.Writer    // nil means quiet
	Logger   *slog.Logger // nil means slog.Default()

	// Attempts bounds the downloads tried per input on connection errors
	// and 5xx answers (0 means 3). RetryDelay is the first back-off, doubled
	// on each retry (0 means 1s).
	Attempts   int
	RetryDelay time.Duration

	mu       sync.Mutex
	verified map[string]bool        // digests re-hashed OK by this process
	locks    map[string]*sync.Mutex // one download per digest at a time
}

// NewCache returns a cache rooted at dir; "" means os.UserCacheDir()/homecloud.
func NewCache(dir string) (*Cache, error) {
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("find the user cache dir (set XDG_CACHE_HOME or pass a cache dir): %w", err)
		}
		dir = filepath.Join(base, "homecloud")
	}
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("create cache dir: %w", err)
	}
	return &Cache{Dir: dir}, nil
}

// Path is where the file with that digest lives once cached.
func (c *Cache) Path(sha256hex string) string {
	return filepath.Join(c.Dir, "sha256", strings.ToLower(sha256hex))
}

// Get returns the path of a verified file with that sha256, downloading it
// from url if the cache lacks it.
func (c *Cache) Get(ctx context.Context, name, url, sha256hex string) (string, error) {
	return c.GetInput(ctx, Input{Name: name, URL: url, SHA256: sha256hex})
}

// GetInput is Get with the flag that supplies the input locally, for a
// better error when the cache is offline.
func (c *Cache) GetInput(ctx context.Context, in Input) (string, error) {
	want, err := parseDigest(in.Name, in.SHA256)
	if err != nil {
		return "", err
	}
	in.SHA256 = want
	unlock := c.lock(want)
	defer unlock()

	ok, err := c.lookup(in)
	if err != nil {
		return "", err
	}
	if ok {
		return c.Path(want), nil
	}
	if c.Offline {
		return "", offlineError(in)
	}
	if in.URL == "" {
		return "", fmt.Errorf("%s (sha256 %s) is not in the cache and has no download URL: supply it as a local file", in.Name, want)
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "sha256"), 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	if err := c.download(ctx, in); err != nil {
		return "", err
	}
	c.markVerified(want)
	return c.Path(want), nil
}

func offlineError(in Input) error {
	how := "supply it as a local file"
	if in.Flag != "" {
		how = "pass " + in.Flag
	}
	return fmt.Errorf("%s %w and --offline given: %s or run once without --offline", in.Name, ErrNotCached, how)
}

// lookup reports whether a good copy is cached. An entry is re-hashed once
// per process: a corrupt one is deleted so it gets fetched again.
func (c *Cache) lookup(in Input) (bool, error) {
	path := c.Path(in.SHA256)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("stat cached %s: %w", in.Name, err)
	}
	if c.isVerified(in.SHA256) {
		return true, nil
	}
	got, err := HashFile(path)
	if err != nil {
		return false, fmt.Errorf("check cached %s: %w", in.Name, err)
	}
	if got == in.SHA256 {
		c.markVerified(in.SHA256)
		return true, nil
	}
	c.logger().Warn("cached file is corrupt, removing it to fetch it again",
		"input", in.Name, "path", path, "want", in.SHA256, "got", got)
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("remove corrupt cache entry: %w", err)
	}
	return false, nil
}

// Put stores r in the cache and returns its path. If sha256hex is not empty
// the content must hash to it; otherwise it is stored under its own digest.
func (c *Cache) Put(ctx context.Context, r io.Reader, sha256hex string) (string, error) {
	want := ""
	if sha256hex != "" {
		var err error
		if want, err = parseDigest("input", sha256hex); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(c.Dir, "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create cache dir: %w", err)
	}
	f, err := os.CreateTemp(dir, "put-*.tmp")
	if err != nil {
		return "", fmt.Errorf("put into cache: %w", err)
	}
	defer os.Remove(f.Name()) // no-op once renamed
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r}); err != nil {
		f.Close()
		return "", fmt.Errorf("put into cache: %w", err)
	}
	if err := syncClose(f); err != nil {
		return "", fmt.Errorf("put into cache: %w", err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if want != "" && got != want {
		return "", fmt.Errorf("put into cache: %w: expected %s, got %s", ErrDigestMismatch, want, got)
	}
	unlock := c.lock(got)
	defer unlock()
	if err := renameSync(f.Name(), c.Path(got)); err != nil {
		return "", fmt.Errorf("put into cache: %w", err)
	}
	c.markVerified(got)
	return c.Path(got), nil
}

// HashFile returns the lower-case hex SHA-256 of the file at path.
func HashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// VerifyFile checks that a local file (e.g. given with --k3s-binary) has the
// expected digest.
func VerifyFile(name, path, sha256hex string) error {
	want, err := parseDigest(name, sha256hex)
	if err != nil {
		return err
	}
	got, err := HashFile(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", name, err)
	}
	if got != want {
		return fmt.Errorf("%s %s: %w: expected %s, got %s", name, path, ErrDigestMismatch, want, got)
	}
	return nil
}

func parseDigest(name, s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if b, err := hex.DecodeString(s); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%s: sha256 %q is not 64 hex digits", name, s)
	}
	return s, nil
}

func (c *Cache) lock(digest string) func() {
	c.mu.Lock()
	if c.locks == nil {
		c.locks = map[string]*sync.Mutex{}
	}
	m := c.locks[digest]
	if m == nil {
		m = &sync.Mutex{}
		c.locks[digest] = m
	}
	c.mu.Unlock()
	m.Lock()
	return m.Unlock
}

func (c *Cache) isVerified(digest string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verified[digest]
}

func (c *Cache) markVerified(digest string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.verified == nil {
		c.verified = map[string]bool{}
	}
	c.verified[digest] = true
}

func (c *Cache) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

func syncClose(f *os.File) error {
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// renameSync renames and then fsyncs the directory so the new name survives
// a power cut.
func renameSync(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(to))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
