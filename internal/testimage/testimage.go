// Package testimage builds small but realistic Armbian-style base disk
// images for tests: an MBR (or GPT) with one Linux partition at 4 MiB
// holding an ext4 root file system whose big directories carry htree
// indexes, like a real image's /etc, /usr/bin and /lib/systemd/system.
//
// The images are made with tools nobody here wrote (sfdisk, mkfs.ext4,
// e2fsck) so that code under test is checked against an independent
// reference.
package testimage

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Layout constants of the images Make builds; they match Armbian's
// sunxi images.
const (
	RootOffset       int64 = 4 << 20   // start of the root partition
	BootloaderOffset int64 = 8 << 10   // where the sunxi SPL is written
	BootloaderEnd    int64 = 809 << 10 // end of SPL + FIT image
	RootLabel              = "armbi_root"
	DefaultSizeMiB         = 96
)

// Options selects variants of the base image.
type Options struct {
	// SizeMiB is the image size; 0 means DefaultSizeMiB.
	SizeMiB int
	// WithBootloader writes recognisable non-zero bytes over
	// [BootloaderOffset, BootloaderEnd), like u-boot's SPL + FIT.
	WithBootloader bool
	// GPT uses a GPT instead of an MBR (sunxi cannot boot that).
	GPT bool
	// NoExt4 leaves the partition without a file system (raw bytes).
	NoExt4 bool
}

// RequireTools skips the test, naming the missing program, unless every
// e2fsprogs/util-linux tool the image tests rely on is installed.
func RequireTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"sfdisk", "mkfs.ext4", "e2fsck", "debugfs", "dumpe2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not found in PATH (install e2fsprogs and fdisk/util-linux)", tool)
		}
	}
}

// Make builds a base image in t.TempDir() and returns its path.
func Make(t testing.TB, opts Options) string {
	t.Helper()
	RequireTools(t)
	size := opts.SizeMiB
	if size == 0 {
		size = DefaultSizeMiB
	}
	if size < 16 {
		t.Fatalf("testimage: SizeMiB %d too small, need at least 16", size)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "base.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(size)<<20); err != nil {
		t.Fatal(err)
	}

	label := "dos"
	if opts.GPT {
		label = "gpt"
	}
	// Partition up to the end (GPT keeps its backup header past it).
	script := fmt.Sprintf("label: %s\nstart=%d, type=linux\n", label, RootOffset/512)
	run(t, strings.NewReader(script), "sfdisk", "--quiet", img)

	partBytes := partitionSize(t, img)
	if opts.NoExt4 {
		fillRaw(t, img, partBytes)
	} else {
		tree := filepath.Join(dir, "rootfs")
		buildTree(t, tree)
		target := fmt.Sprintf("%s?offset=%d", img, RootOffset)
		run(t, nil, "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", RootLabel,
			"-d", tree, "-E", fmt.Sprintf("offset=%d", RootOffset),
			img, strconv.FormatInt(partBytes/1024, 10)+"k")
		// mkfs -d makes no htree indexes; -D re-indexes every directory
		// larger than one block, as on a long-lived real root fs.
		cmd := exec.Command("e2fsck", "-fyD", target)
		if out, err := cmd.CombinedOutput(); err != nil && cmd.ProcessState.ExitCode() > 1 {
			t.Fatalf("testimage: e2fsck -fyD: %v\n%s", err, out)
		}
	}
	if opts.WithBootloader {
		writeBootloader(t, img)
	}
	return img
}

// partitionSize asks sfdisk for the first partition's size in bytes.
func partitionSize(t testing.TB, img string) int64 {
	t.Helper()
	out := run(t, nil, "sfdisk", "--dump", img)
	for _, line := range strings.Split(string(out), "\n") {
		_, rest, ok := strings.Cut(line, "size=")
		if !ok || !strings.Contains(line, "start=") {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strings.Split(rest, ",")[0]), 10, 64)
		if err != nil {
			t.Fatalf("testimage: parse sfdisk size in %q: %v", line, err)
		}
		return n * 512
	}
	t.Fatalf("testimage: no partition in sfdisk --dump output:\n%s", out)
	return 0
}

// BootloaderBytes returns the pattern WithBootloader writes, so tests can
// compare against it.
func BootloaderBytes() []byte {
	b := make([]byte, BootloaderEnd-BootloaderOffset)
	copy(b, "eGON.BT0") // the sunxi SPL magic sits at offset 4; close enough
	for i := 8; i < len(b); i++ {
		b[i] = byte(i*7+1) | 1 // never zero
	}
	return b
}

func writeBootloader(t testing.TB, img string) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(BootloaderBytes(), BootloaderOffset); err != nil {
		t.Fatal(err)
	}
}

// fillRaw writes a non-ext4 header into the partition.
func fillRaw(t testing.TB, img string, partBytes int64) {
	t.Helper()
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := bytes.Repeat([]byte("not a file system "), 4096)
	if int64(len(junk)) > partBytes {
		junk = junk[:partBytes]
	}
	if _, err := f.WriteAt(junk, RootOffset); err != nil {
		t.Fatal(err)
	}
}

func run(t testing.TB, stdin *strings.Reader, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testimage: %s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return out
}
