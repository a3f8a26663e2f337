package build

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/builder/ext4fs"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/internal/testimage"
)

// nonZeroFile writes n bytes without a zero block (debugfs leaves those
// as holes, which would take no space) and returns its path.
func nonZeroFile(t *testing.T, name string, n int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	chunk := bytes.Repeat([]byte("homecloud filler "), 1<<16)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for n > 0 {
		w := chunk[:min(int64(len(chunk)), n)]
		if _, err := f.Write(w); err != nil {
			t.Fatal(err)
		}
		n -= int64(len(w))
	}
	return p
}

// A base whose root fs cannot take the node's files is a usage error on
// --base-image before anything is written, not debugfs running out of
// blocks in the first image after --out (and the secrets in it) was made.
func TestBaseWithoutRoomIsUsageError(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	// Fill the root fs until 16 MiB are left.
	const left = 16 << 20
	free, err := ext4fs.FreeBytes(base, rootOff)
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := ext4fs.Open(context.Background(), base, rootOff)
	if err != nil {
		t.Fatal(err)
	}
	err = fsys.CopyFile("/var/filler", nonZeroFile(t, "filler", free-left), 0o644, 0, 0)
	if cerr := fsys.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	// More than is left: without the check debugfs fails in node1's image.
	images := nonZeroFile(t, "k3s-airgap-images-arm64.tar.zst", 24<<20)

	for _, existing := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "out")
		if existing {
			if err := os.Mkdir(out, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		s := parseSpec(t, f.args("--board", "qemu-virt", "--nodes", "2", "--base-image", base, "--out", out, "--k3s-images", images))
		_, err := Run(context.Background(), s, f.opts())
		var ue *spec.UsageError
		if !errors.As(err, &ue) || ue.Field != "--base-image" {
			t.Fatalf("Run: %v, want a --base-image usage error", err)
		}
		for _, w := range []string{base, " MiB free, the node files need 29 MiB", "resize2fs"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if got := dirState(t, out); len(got) > 0 || (!existing && got != nil) {
			t.Errorf("--out has %q after a usage error", got)
		}
	}

	// The same base takes the node's files without the images: the
	// margin does not refuse a base they fit in.
	out := filepath.Join(t.TempDir(), "out")
	res := run(t, f, "--board", "qemu-virt", "--nodes", "1", "--base-image", base, "--out", out)
	fsckClean(t, res.Images[0].Path)
}
