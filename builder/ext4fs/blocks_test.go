package ext4fs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// randomFile writes n pseudo-random bytes (incompressible, no zero
// blocks, so every block is allocated) and returns the path and digest.
func randomFile(t testing.TB, n int64, seed uint64) (string, [32]byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("random-%d", seed))
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	src := rand.NewChaCha8([32]byte{byte(seed)})
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(src, n)); err != nil {
		t.Fatal(err)
	}
	return p, [32]byte(h.Sum(nil))
}

func writeAndClose(t testing.TB, img string, apply func(FS) error) {
	t.Helper()
	f, err := Open(context.Background(), img, off)
	if err != nil {
		t.Fatal(err)
	}
	err = apply(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestReplaceFreesBlocks(t *testing.T) {
	img := newBaseCache(t).fresh(t, 0)
	const size = 4 << 20
	first, _ := randomFile(t, size, 1)
	second, secondSum := randomFile(t, size, 2)
	free0 := freeBlocks(t, img)

	writeAndClose(t, img, func(f FS) error { return f.CopyFile("/usr/bin/blob", first, 0o755, 0, 0) })
	free1 := freeBlocks(t, img)
	if used := free0 - free1; used < size/4096 {
		t.Fatalf("writing %d bytes used only %d blocks", size, used)
	}
	writeAndClose(t, img, func(f FS) error {
		return f.WriteFile("/usr/bin/blob", bytes.NewReader(mustRead(t, second)), 0o755, 0, 0)
	})
	if free2 := freeBlocks(t, img); free2 != free1 {
		t.Errorf("free blocks %d after replacing, want %d as before: old blocks not freed", free2, free1)
	}
	fsckClean(t, img)
	if got := dumpSum(t, img, "/usr/bin/blob"); got != secondSum {
		t.Error("replaced file does not hold the new content")
	}
	writeAndClose(t, img, func(f FS) error { return f.Remove("/usr/bin/blob") })
	if free3 := freeBlocks(t, img); free3 != free0 {
		t.Errorf("free blocks %d after Remove, want %d as before the write", free3, free0)
	}
	fsckClean(t, img)
}

func mustRead(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dumpSum extracts p with debugfs dump and hashes it.
func dumpSum(t testing.TB, img, p string) [32]byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dump")
	if b, err := exec.Command("debugfs", "-R", fmt.Sprintf("dump %s %s", quote(p), quote(out)), target(img)).CombinedOutput(); err != nil || strings.Contains(string(b), "not found") {
		t.Fatalf("debugfs dump %s: %v\n%s", p, err, b)
	}
	return sha256.Sum256(mustRead(t, out))
}

// TestLargeFile writes a k3s-sized (70 MB) binary; it takes a few
// seconds, so -short skips it.
func TestLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the 70 MB write in -short mode")
	}
	img := newBaseCache(t).fresh(t, 160)
	before := takeSnapshot(t, img)
	src, sum := randomFile(t, 70<<20, 3)
	writeAndClose(t, img, func(f FS) error {
		if err := f.MkdirAll("/usr/local/bin", 0o755, 0, 0); err != nil {
			return err
		}
		// Small writes before the big one: the case go-diskfs got wrong.
		for i := range 50 {
			if err := f.WriteFile(fmt.Sprintf("/etc/small-%02d", i), strings.NewReader("x"), 0o644, 0, 0); err != nil {
				return err
			}
		}
		return f.CopyFile("/usr/local/bin/k3s", src, 0o755, 0, 0)
	})
	fsckClean(t, img)
	before.assertSame(t, img)
	if got := dumpSum(t, img, "/usr/local/bin/k3s"); got != sum {
		t.Error("70 MB file differs after the round trip through debugfs")
	}
	if in := stat(t, img, "/usr/local/bin/k3s"); in.mode != 0o755 || in.typ != "regular" {
		t.Errorf("k3s inode %+v", in)
	}
}

// TestBatching checks that a node's worth of files costs a handful of
// debugfs processes, not one per file, and that all of them land.
func TestBatching(t *testing.T) {
	img := newBaseCache(t).fresh(t, 0)
	f, err := Open(context.Background(), img, off)
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{"/etc/homecloud/tls", "/usr/bin", "/lib/systemd/system", "/etc/systemd/system/multi-user.target.wants"}
	const n = 300
	for i := range n {
		d := dirs[i%len(dirs)]
		if err := f.MkdirAll(d, 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.WriteFile(fmt.Sprintf("%s/batch-%03d", d, i), strings.NewReader(fmt.Sprint(i)), 0o644, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if runs := f.(*debugFS).runs; runs > 2*len(dirs)+1 {
		t.Errorf("%d files took %d debugfs runs, want at most %d", n, runs, 2*len(dirs)+1)
	}
	fsckClean(t, img)
	for _, i := range []int{0, 1, 2, 3, n - 1} {
		p := fmt.Sprintf("%s/batch-%03d", dirs[i%len(dirs)], i)
		if c := debugfsR(t, img, "cat "+quote(p)); c != fmt.Sprint(i) {
			t.Errorf("%s: %q, want %q", p, c, fmt.Sprint(i))
		}
	}
	ls := debugfsR(t, img, "ls /usr/bin")
	if got := strings.Count(ls, "batch-"); got != n/len(dirs) {
		t.Errorf("/usr/bin lists %d batch files, want %d", got, n/len(dirs))
	}
}

// TestMakeDirs makes a node's directories in one call: existing ones
// (one behind the /lib symlink), new nested ones sharing parents, one
// removed and made again in the same batch. It costs one lookup and
// one write run, and the result is what MkdirAll one by one would give.
func TestMakeDirs(t *testing.T) {
	img := newBaseCache(t).fresh(t, 0)
	f, err := Open(context.Background(), img, off)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.MkdirAll("/srv/old", 0o755, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Remove("/srv/old"); err != nil {
		t.Fatal(err)
	}
	dirs := []Dir{
		{Path: "/etc", Mode: 0o755},
		{Path: "/lib/systemd/system", Mode: 0o755},
		{Path: "/srv/old", Mode: 0o750, UID: 7, GID: 8},
		{Path: "/var/lib/rancher/k3s/server", Mode: 0o700},
		{Path: "/var/lib/rancher/k3s/server/tls/etcd", Mode: 0o700},
		{Path: "/etc/homecloud/tls", Mode: 0o700},
	}
	runs := f.(*debugFS).runs
	if err := f.MakeDirs(dirs); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The removal is flushed first (1 write run), then one lookup for
	// every unknown prefix, then Close's write run.
	if got := f.(*debugFS).runs - runs; got != 3 {
		t.Errorf("MakeDirs of %d directories and Close took %d debugfs runs, want 3", len(dirs), got)
	}
	fsckClean(t, img)
	for _, d := range dirs {
		in := stat(t, img, d.Path+"/")
		if in.typ != "directory" || in.mode != int(d.Mode) || in.uid != d.UID || in.gid != d.GID {
			t.Errorf("%s: %+v, want a directory %o %d:%d", d.Path, in, d.Mode, d.UID, d.GID)
		}
	}
	if in := stat(t, img, "/var/lib/rancher"); in.typ != "directory" || in.mode != 0o755 {
		t.Errorf("made parent /var/lib/rancher: %+v, want a 0755 directory", in)
	}
}
