package diskimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/internal/testimage"
)

// sfdiskSize returns the first partition's size in bytes as sfdisk sees it.
func sfdiskSize(t *testing.T, img string) int64 {
	t.Helper()
	out, err := exec.Command("sfdisk", "--dump", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if _, rest, ok := strings.Cut(line, "size="); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.Split(rest, ",")[0]), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n * 512
		}
	}
	t.Fatalf("no partition in\n%s", out)
	return 0
}

func TestInspect(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts testimage.Options
		want Layout
	}{
		{"armbian mbr with u-boot", testimage.Options{WithBootloader: true},
			Layout{Table: "mbr", RootIndex: 1, RootOffset: 4 << 20, RootLabel: "armbi_root", FirstPartitionOffset: 4 << 20, HasBootloader: true}},
		{"mbr without u-boot", testimage.Options{},
			Layout{Table: "mbr", RootIndex: 1, RootOffset: 4 << 20, RootLabel: "armbi_root", FirstPartitionOffset: 4 << 20}},
		{"gpt", testimage.Options{GPT: true},
			Layout{Table: "gpt", RootIndex: 1, RootOffset: 4 << 20, RootLabel: "armbi_root", FirstPartitionOffset: 4 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := testimage.Make(t, tc.opts)
			tc.want.RootSize = sfdiskSize(t, img)
			got, err := Inspect(img)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Inspect = %+v\nwant      %+v", got, tc.want)
			}
		})
	}
}

func TestInspectErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	truncated := func() string {
		img := testimage.Make(t, testimage.Options{})
		if err := os.Truncate(img, 32<<20); err != nil {
			t.Fatal(err)
		}
		return img
	}
	for _, tc := range []struct {
		name string
		path func() string
		want string
	}{
		{"missing file", func() string { return filepath.Join(dir, "nope.img") }, "no such file"},
		{"zeros", func() string { return write("zero.img", make([]byte, 1<<20)) }, "no partition table (MBR or GPT) found: give an Armbian"},
		{"xz", func() string { return write("x.img.xz", append(append([]byte{}, xzMagic...), make([]byte, 4096)...)) }, "is xz-compressed"},
		{"no ext4", func() string { return testimage.Make(t, testimage.Options{NoExt4: true}) }, "none of its 1 mbr partitions holds an ext4 file system"},
		{"truncated", truncated, "the image is truncated"},
		{"directory", func() string { return dir }, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Inspect(tc.path())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Inspect error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
