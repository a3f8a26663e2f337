package ext4fs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/internal/testimage"
)

const off = testimage.RootOffset

// baseCache makes one base image per size for a whole test and hands out
// sparse copies of it, so each case starts from a pristine image.
type baseCache struct {
	parent testing.TB
	bases  map[int]string
}

func newBaseCache(t testing.TB) *baseCache {
	testimage.RequireTools(t)
	return &baseCache{parent: t, bases: map[int]string{}}
}

func (c *baseCache) fresh(t testing.TB, sizeMiB int) string {
	t.Helper()
	if c.bases[sizeMiB] == "" {
		c.bases[sizeMiB] = testimage.Make(c.parent, testimage.Options{WithBootloader: true, SizeMiB: sizeMiB})
	}
	img := filepath.Join(t.TempDir(), "node.img")
	if out, err := exec.Command("cp", "--sparse=always", c.bases[sizeMiB], img).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return img
}

func target(img string) string { return fmt.Sprintf("%s?offset=%d", img, off) }

// debugfsR runs one read-only debugfs request and returns its stdout.
func debugfsR(t testing.TB, img, req string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("debugfs", "-R", req, target(img))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", req, err, stderr.Bytes())
	}
	return string(out)
}

func fsckClean(t testing.TB, img string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", target(img)).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
}

func freeBlocks(t testing.TB, img string) int {
	t.Helper()
	out, err := exec.Command("dumpe2fs", "-h", target(img)).Output()
	if err != nil {
		t.Fatalf("dumpe2fs -h: %v", err)
	}
	m := regexp.MustCompile(`(?m)^Free blocks:\s+(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no free block count in dumpe2fs output:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

type inode struct {
	typ            string // as debugfs prints it: regular, directory, symlink
	mode, uid, gid int
	link           string // symlink target
}

var (
	statType  = regexp.MustCompile(`Type: (\S+)\s+Mode:\s+(\d+)`)
	statOwner = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+)`)
	statLink  = regexp.MustCompile(`Fast link dest: "(.*)"`)
)

// stat asks debugfs about p ("p/" follows a symlinked directory).
func stat(t testing.TB, img, p string) inode {
	t.Helper()
	out := debugfsR(t, img, "stat "+quote(p))
	m, o := statType.FindStringSubmatch(out), statOwner.FindStringSubmatch(out)
	if m == nil || o == nil {
		t.Fatalf("stat %s: unexpected output\n%s", p, out)
	}
	var in inode
	in.typ = m[1]
	mode, _ := strconv.ParseInt(m[2], 8, 32)
	in.mode = int(mode)
	in.uid, _ = strconv.Atoi(o[1])
	in.gid, _ = strconv.Atoi(o[2])
	if in.typ == "symlink" {
		if l := statLink.FindStringSubmatch(out); l != nil {
			in.link = l[1]
		} else {
			// Long targets live in a data block: cat prints them.
			in.link = debugfsR(t, img, "cat "+quote(p))
		}
	}
	return in
}

func exists(t testing.TB, img, p string) bool {
	t.Helper()
	out, _ := exec.Command("debugfs", "-R", "stat "+quote(p), target(img)).CombinedOutput()
	return !strings.Contains(string(out), "File not found")
}

// snapshot records what writes into the file system must not touch.
type snapshot struct {
	table      []byte
	bootloader []byte
}

func takeSnapshot(t testing.TB, img string) snapshot {
	t.Helper()
	table, err := exec.Command("sfdisk", "--dump", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v", err)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	boot := make([]byte, off)
	if _, err := f.ReadAt(boot, 0); err != nil {
		t.Fatal(err)
	}
	return snapshot{table, boot}
}

func (s snapshot) assertSame(t testing.TB, img string) {
	t.Helper()
	now := takeSnapshot(t, img)
	if !bytes.Equal(now.table, s.table) {
		t.Errorf("sfdisk --dump changed:\n%s\nwas\n%s", now.table, s.table)
	}
	if !bytes.Equal(now.bootloader, s.bootloader) {
		t.Error("bytes before the root partition (MBR, u-boot) changed")
	}
}
