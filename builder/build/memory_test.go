package build

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/homecloud/homecloud/builder/ext4fs"
	"github.com/homecloud/homecloud/builder/payload"
	"github.com/homecloud/homecloud/internal/testimage"
)

// maxRSS is the bound on the builder's peak memory, whatever
// the image size.
const maxRSS = 256 << 20

// The builder streams images: writing two 4 GiB images, sparse but with
// tens of MB of real data, keeps its peak RSS under maxRSS.
//
// The Maxrss of a child that Go started also counts this test process's
// own peak (the child shares its memory until it execs), so it is an
// upper bound on the builder's: the test streams its data to keep its
// own peak far below the builder's.
func TestPeakMemoryLargeSparseBase(t *testing.T) {
	if _, err := payload.Firstboot(); errors.Is(err, payload.ErrMissing) {
		t.Skip("skipping: the builder has no node service embedded (run make payload)")
	}
	const sizeMiB = 4096
	f := newFixture(t)
	bin := buildCommand(t)
	base := testimage.Make(t, testimage.Options{SizeMiB: sizeMiB})
	armbianize(t, base)
	const dataPath = "/var/lib/homecloud-test/data.bin"
	data := filepath.Join(f.dir, "data.bin")
	dataSum := writeRandom(t, data, 32<<20)
	fsys, err := ext4fs.Open(context.Background(), base, rootOff)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.MkdirAll(path.Dir(dataPath), 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := fsys.CopyFile(dataPath, data, 0o644, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Close(); err != nil {
		t.Fatal(err)
	}
	// A k3s-sized stand-in: more real data written into every image.
	k3s := filepath.Join(f.dir, "k3s-stand-in")
	writeRandom(t, k3s, 32<<20)

	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(bin, append([]string{"build", "--board", "qemu-virt", "--nodes", "2", "--base-image", base, "--out", out},
		f.args("--test-k3s", k3s)...)...)
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(f.dir, "xdg"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("homecloud-builder: %v\n%s", err, stderr.String())
	}
	rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10 // KiB on Linux
	var self syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		t.Fatal(err)
	}
	t.Logf("builder's peak RSS ≤ %.1f MiB for two %d MiB images (this test's own: %.1f MiB)",
		float64(rss)/(1<<20), sizeMiB, float64(self.Maxrss<<10)/(1<<20))
	if rss >= maxRSS {
		t.Errorf("peak RSS %d MiB, want under %d MiB", rss>>20, maxRSS>>20)
	}

	// The images are whole: the base's data is in them.
	for _, name := range []string{"homecloud-node1.img", "homecloud-node2.img"} {
		img := filepath.Join(out, name)
		if st, err := os.Stat(img); err != nil || st.Size() != sizeMiB<<20 {
			t.Fatalf("%s: %v, want a %d MiB image", name, err, sizeMiB)
		}
		got := sha256.Sum256([]byte(cat(t, img, dataPath)))
		if hex.EncodeToString(got[:]) != dataSum {
			t.Errorf("%s: %s has sha256 %x, the base's %s", name, dataPath, got, dataSum)
		}
	}
}

// writeRandom streams n random bytes to p and returns their SHA-256.
func writeRandom(t *testing.T, p string, n int64) string {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, err = io.CopyN(io.MultiWriter(f, h), rand.Reader, n)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
