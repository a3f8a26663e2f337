package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/internal/testimage"
)

// Without --k3s-images the pinned airgap archive is downloaded through
// the cache, checked and baked where k3s imports it; offline, only a
// cached copy will do. The cases run in order on one cache.
func TestK3sImagesPinnedDownload(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	armbianize(t, base)
	archive := []byte(strings.Repeat("zstd frames of k3s' system images\n", 4096))
	tampered := append([]byte("evil"), archive[4:]...)
	pinned := sha256.Sum256(archive)

	var served []byte // what the server sends; nil: it must not be asked
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served == nil {
			t.Errorf("%s %s asked of the server", r.Method, r.URL)
			http.Error(w, "not now", http.StatusGone)
			return
		}
		w.Write(served)
	}))
	t.Cleanup(srv.Close)
	const name = "k3s-airgap-images-arm64.tar.zst"

	tests := []struct {
		name    string
		served  []byte
		offline bool
		wantErr string // "" for a build that bakes the archive
	}{
		{"offline with nothing cached", nil, true, "pass --k3s-images FILE"},
		{"download with the wrong digest", tampered, false, "sha256 mismatch"},
		{"download", archive, false, ""},
		{"offline from the cache", nil, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			served = tt.served
			out := filepath.Join(t.TempDir(), "out")
			// A real k3s (not --test-k3s): only then are the images baked.
			args := f.args("--test-k3s", "", "--k3s-binary", f.k3s, "--board", "qemu-virt", "--nodes", "1",
				"--base-image", base, "--out", out)
			if tt.offline {
				args = append(args, "--offline")
			}
			opts := f.opts()
			opts.HTTPClient = srv.Client()
			opts.K3sImages = &Download{Version: "test", URL: srv.URL + "/v1/" + name, SHA256: hex.EncodeToString(pinned[:])}
			res, err := Run(context.Background(), parseSpec(t, args), opts)

			if tt.wantErr != "" {
				var ue *spec.UsageError
				if !errors.As(err, &ue) || ue.Field != "--k3s-images" || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run: %v, want a --k3s-images usage error saying %q", err, tt.wantErr)
				}
				if got := dirState(t, out); got != nil {
					t.Errorf("--out was made: %q", got)
				}
				if _, err := os.Stat(filepath.Join(f.cache, "sha256", hex.EncodeToString(pinned[:]))); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the archive is in the cache after %s (stat: %v)", tt.name, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			img := res.Images[0].Path
			in, ok := stat(t, img, path.Join(k3sImagesDir, name))
			if !ok || in.typ != "regular" || in.mode != 0o644 || in.uid != 0 || in.gid != 0 {
				t.Errorf("%s/%s: %+v (exists %v), want a regular file 0644 root", k3sImagesDir, name, in, ok)
			}
			if got := cat(t, img, path.Join(k3sImagesDir, name)); got != string(archive) {
				t.Errorf("baked archive is %d bytes, not the %d served", len(got), len(archive))
			}
			fsckClean(t, img)
		})
	}
}
