package build

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/homecloud/homecloud/internal/testimage"
)

func sha256sum(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", p).Output()
	if err != nil {
		t.Fatalf("sha256sum %s: %v", p, err)
	}
	return strings.Fields(string(out))[0]
}

// A decompressed base left damaged in the cache (power loss, disk full,
// a stray write) is decompressed again, never baked into the images.
func TestCachedBaseDamagedIsDecompressedAgain(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	armbianize(t, base)
	baseXZ := compressXZ(t, base)
	baseSum := sha256sum(t, base)
	baseSize, err := os.Stat(base)
	if err != nil {
		t.Fatal(err)
	}
	// Where a file of the base lives, to corrupt it as a bad sector would.
	blk, err := strconv.ParseInt(strings.TrimSpace(debugfsR(t, base, "blocks /etc/fixture-config-file-100.conf")), 10, 64)
	if err != nil {
		t.Fatalf("block of /etc/fixture-config-file-100.conf: %v", err)
	}

	// build returns the build's progress and warnings: the progress lines
	// are written one at a time and the warnings before any image.
	build := func(t *testing.T) (*Result, string) {
		t.Helper()
		var log bytes.Buffer
		opts := f.opts()
		opts.Progress = &log
		opts.Logger = slog.New(slog.NewTextHandler(&log, nil))
		out := filepath.Join(t.TempDir(), "out")
		res, err := Run(context.Background(), parseSpec(t, f.args("--board", "qemu-virt", "--nodes", "1",
			"--base-image", baseXZ, "--out", out)), opts)
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, log.String())
		}
		return res, log.String()
	}
	if _, log := build(t); !strings.Contains(log, "decompressing") {
		t.Fatalf("the first build did not decompress the base:\n%s", log)
	}
	cached, _ := filepath.Glob(filepath.Join(f.cache, "base", "*.img"))
	if len(cached) != 1 {
		t.Fatalf("decompressed bases in the cache: %v, want one", cached)
	}
	raw := cached[0]

	tests := []struct {
		name         string
		damage       func() error
		decompressed bool
	}{
		{"truncated", func() error { return os.Truncate(raw, baseSize.Size()/2) }, true},
		{"a file's block overwritten", func() error {
			fh, err := os.OpenFile(raw, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer fh.Close()
			_, err = fh.WriteAt([]byte("setting=666\n"), rootOff+blk*4096)
			return err
		}, true},
		{"record deleted", func() error { return os.Remove(raw + ".json") }, true},
		// Another mtime alone costs a hash, not a decompression.
		{"touched", func() error {
			later := time.Now().Add(time.Hour)
			return os.Chtimes(raw, later, later)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.damage(); err != nil {
				t.Fatal(err)
			}
			res, log := build(t)
			if got := strings.Contains(log, "decompressing"); got != tt.decompressed {
				t.Errorf("decompressed again: %v, want %v\n%s", got, tt.decompressed, log)
			}
			if got := strings.Contains(log, "decompressing it again"); got != tt.decompressed {
				t.Errorf("warned about the cached base: %v, want %v\n%s", got, tt.decompressed, log)
			}
			if got := sha256sum(t, raw); got != baseSum {
				t.Errorf("cached base has sha256 %s, the base %s", got, baseSum)
			}
			var rec baseRecord
			b, err := os.ReadFile(raw + ".json")
			if err == nil {
				err = json.Unmarshal(b, &rec)
			}
			if err != nil || rec.SHA256 != baseSum || rec.Size != baseSize.Size() {
				t.Errorf("cache record %+v (%v), want size %d sha256 %s", rec, err, baseSize.Size(), baseSum)
			}
			checkImages(t, f, res, base, "qemu-virt", 1)
		})
	}
}
