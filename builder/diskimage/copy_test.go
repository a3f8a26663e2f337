package diskimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/homecloud/homecloud/internal/testimage"
)

func digest(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// allocated returns the bytes a file really occupies on disk.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}

func size(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestSparseCopy(t *testing.T) {
	dir := t.TempDir()
	// A 4 GiB file with three small data islands, one of them at the very end.
	huge := filepath.Join(dir, "huge.img")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1 << 30, 4<<30 - 3} {
		if _, err := f.WriteAt([]byte("abc"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	// A dense file whose middle is written-out zeros.
	dense := filepath.Join(dir, "dense.img")
	data := bytes.Repeat([]byte{1}, 8<<20)
	clear(data[1<<20 : 7<<20])
	if err := os.WriteFile(dense, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// A sparse file with one data extent longer than a kernel copy chunk.
	long := filepath.Join(dir, "long.img")
	writeIsland(t, long, 1<<20, kernelChunk+3<<20+5, 256<<20)
	// The same on tmpfs: copy_file_range across file systems is refused
	// (EXDEV) by Linux ≥ 5.19, so the copy falls back to read/write.
	crossFS := ""
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "homecloud-copy-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(shm) })
		crossFS = filepath.Join(shm, "src.img")
		writeIsland(t, crossFS, 64<<10, 3<<20, 64<<20)
	}

	for _, tc := range []struct {
		name     string
		src      string
		maxAlloc int64   // bytes dst may occupy
		islands  []int64 // check only these offsets (nil: hash everything)
	}{
		{"testimage", testimage.Make(t, testimage.Options{WithBootloader: true}), -1, nil},
		{"huge sparse", huge, 1 << 20, []int64{0, 1 << 30, 4<<30 - 3}},
		{"dense zeros become holes", dense, 2<<20 + 64<<10, nil},
		{"extent longer than a kernel chunk", long, kernelChunk + 4<<20, nil},
		{"source on another file system", crossFS, 4 << 20, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.src == "" {
				t.Skip("no /dev/shm here")
			}
			dst := filepath.Join(t.TempDir(), "copy.img")
			if err := SparseCopy(context.Background(), tc.src, dst); err != nil {
				t.Fatal(err)
			}
			if size(t, dst) != size(t, tc.src) {
				t.Fatalf("size %d, want %d", size(t, dst), size(t, tc.src))
			}
			if tc.islands == nil && digest(t, dst) != digest(t, tc.src) {
				t.Fatal("contents differ from the source")
			}
			for _, off := range tc.islands {
				// Holes read as zeros, so with little allocated the
				// islands are all there is to compare.
				if got := readAt(t, dst, off, 3); got != "abc" {
					t.Errorf("at %d: %q, want abc", off, got)
				}
			}
			limit := tc.maxAlloc
			if limit < 0 {
				limit = allocated(t, tc.src)
			}
			if got := allocated(t, dst); got > limit {
				t.Errorf("copy occupies %d bytes on disk, want at most %d", got, limit)
			}
		})
	}
}

// writeIsland makes a file of size bytes whose only data is n random
// bytes at off.
func writeIsland(t *testing.T, path string, off, n, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rnd := rand.NewChaCha8([32]byte{1})
	if _, err := io.Copy(io.NewOffsetWriter(f, off), io.LimitReader(rnd, n)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, path string, off int64, n int) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSparseCopyCancelled(t *testing.T) {
	src := testimage.Make(t, testimage.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := SparseCopy(ctx, src, filepath.Join(t.TempDir(), "x.img"))
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("err = %v, want context canceled", err)
	}
}

func xzCompress(t *testing.T, src string) string {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("skipping: xz not found in PATH (install xz-utils)")
	}
	out := filepath.Join(t.TempDir(), "base.img.xz")
	cmd := exec.Command("sh", "-c", `xz -0 -T2 -c "$1" > "$2"`, "sh", src, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xz: %v\n%s", err, b)
	}
	return out
}

func TestDecompressXZ(t *testing.T) {
	src := testimage.Make(t, testimage.Options{WithBootloader: true, SizeMiB: 32})
	compressed := xzCompress(t, src)
	corrupt := filepath.Join(t.TempDir(), "corrupt.img.xz")
	b, err := os.ReadFile(compressed)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(corrupt, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		run  func(src, dst string) error
	}{
		{"CopyBase", func(s, d string) error { return CopyBase(context.Background(), s, d) }},
		{"DecompressXZ", func(s, d string) error { return DecompressXZ(context.Background(), s, d) }},
		{"pure Go", func(s, d string) error { return decompressWith(s, d, openXZGo) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "out.img")
			if err := tc.run(compressed, dst); err != nil {
				t.Fatal(err)
			}
			if digest(t, dst) != digest(t, src) {
				t.Fatal("decompressed image differs from the original")
			}
			if a, s := allocated(t, dst), size(t, dst); a > s/2 {
				t.Errorf("decompressed image occupies %d of %d bytes: not sparse", a, s)
			}
			if err := tc.run(corrupt, filepath.Join(t.TempDir(), "c.img")); err == nil {
				t.Errorf("truncated .xz (%d of %d bytes) decompressed without error", len(b)/2, len(b))
			}
		})
	}
}

// decompressWith runs DecompressXZ's copy loop over a chosen decoder.
func decompressWith(src, dst string, open func(string) (io.ReadCloser, error)) error {
	r, err := open(src)
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	w := newSparseWriter(out, nil)
	n, err := io.Copy(w, r)
	if err != nil {
		return err
	}
	return w.finish(n)
}

func TestWriteAt(t *testing.T) {
	blob := bytes.Repeat([]byte("SPL!"), 8<<10) // 32 KiB
	parent, bases := t, map[testimage.Options]string{}
	fresh := func(t *testing.T, opts testimage.Options) string {
		if bases[opts] == "" {
			bases[opts] = testimage.Make(parent, opts) // outlives the subtest
		}
		img := filepath.Join(t.TempDir(), "node.img")
		if out, err := exec.Command("cp", "--sparse=always", bases[opts], img).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		return img
	}
	for _, tc := range []struct {
		name string
		opts testimage.Options
		off  int64
		blob []byte
		want string // error substring, "" for success
	}{
		{"sunxi spl at 8 KiB", testimage.Options{}, 8 << 10, blob, ""},
		{"ends exactly at partition", testimage.Options{}, 4<<20 - int64(len(blob)), blob, ""},
		{"over the MBR", testimage.Options{}, 0, blob, "outside the free area [512, 4194304)"},
		{"into the GPT entries", testimage.Options{GPT: true}, 8 << 10, blob, "outside the free area [17408, 4194304)"},
		{"past the partition start", testimage.Options{}, 4<<20 - 100, blob, "reaches past byte 4194304"},
		{"at the partition", testimage.Options{}, 4 << 20, blob, "outside the free area"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := fresh(t, tc.opts)
			before := digest(t, img)
			table, _ := exec.Command("sfdisk", "--dump", img).Output()
			err := WriteAt(img, tc.off, bytes.NewReader(tc.blob))
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				if digest(t, img) != before {
					t.Error("a refused write changed the image")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := make([]byte, len(tc.blob))
			if _, err := f.ReadAt(got, tc.off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.blob) {
				t.Error("blob not found at its offset")
			}
			if after, _ := exec.Command("sfdisk", "--dump", img).Output(); !bytes.Equal(after, table) {
				t.Errorf("partition table changed:\n%s\nwas\n%s", after, table)
			}
			if out, err := exec.Command("e2fsck", "-fn", img+"?offset=4194304").CombinedOutput(); err != nil {
				t.Errorf("e2fsck -fn after WriteAt: %v\n%s", err, out)
			}
		})
	}
}
