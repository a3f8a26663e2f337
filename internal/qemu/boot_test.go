package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// bootImage builds a 24 MiB MBR image whose ext4 root at 4 MiB holds the
// given files and symlinks (a value starting with "->" is a link target),
// made with sfdisk and mkfs.ext4 -d, not with the code under test.
func bootImage(t *testing.T, tree map[string]string) string {
	t.Helper()
	for _, tool := range []string{"sfdisk", "mkfs.ext4", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not found (install fdisk and e2fsprogs)", tool)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for name, v := range tree {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(v, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(v), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 24<<20); err != nil {
		t.Fatal(err)
	}
	sfdisk := exec.Command("sfdisk", "--quiet", img)
	sfdisk.Stdin = strings.NewReader("label: dos\nstart=8192, type=83\n")
	if out, err := sfdisk.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	mkfs := exec.Command("mkfs.ext4", "-q", "-F", "-L", "armbi_root", "-d", root, "-E", fmt.Sprintf("offset=%d", 4<<20), img, "20M")
	if out, err := mkfs.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return img
}

func TestExtractBoot(t *testing.T) {
	long := "initrd.img-6.1.0-99-arm64-with-a-version-long-enough-to-need-a-data-block"
	tests := []struct {
		name                   string
		tree                   map[string]string
		wantKernel, wantInitrd string // contents
		wantErr                string
	}{
		{
			name: "Debian's relative symlinks",
			tree: map[string]string{
				"boot/vmlinuz-6.1.0-99-arm64": "KERNEL", "boot/initrd.img-6.1.0-99-arm64": "INITRD",
				"boot/vmlinuz": "->vmlinuz-6.1.0-99-arm64", "boot/initrd.img": "->initrd.img-6.1.0-99-arm64",
				"boot/vmlinuz.old": "->vmlinuz-6.1.0-98-arm64",
			},
			wantKernel: "KERNEL", wantInitrd: "INITRD",
		},
		{
			name: "absolute, chained and long symlinks",
			tree: map[string]string{
				"vmlinuz-real": "KERNEL", "boot/vmlinuz": "->/boot/Image", "boot/Image": "->../vmlinuz-real",
				"boot/" + long: "INITRD", "boot/initrd.img": "->/boot/" + long,
			},
			wantKernel: "KERNEL", wantInitrd: "INITRD",
		},
		{
			name:       "plain files",
			tree:       map[string]string{"boot/vmlinuz": "K", "boot/initrd.img": "I"},
			wantKernel: "K", wantInitrd: "I",
		},
		{
			name:    "no initrd",
			tree:    map[string]string{"boot/vmlinuz": "K"},
			wantErr: "/boot/initrd.img not found",
		},
		{
			name:    "dangling symlink",
			tree:    map[string]string{"boot/vmlinuz": "->vmlinuz-gone", "boot/initrd.img": "I"},
			wantErr: "/boot/vmlinuz-gone not found",
		},
		{
			name:    "symlink loop",
			tree:    map[string]string{"boot/vmlinuz": "->a", "boot/a": "->vmlinuz", "boot/initrd.img": "I"},
			wantErr: "more than 8 symlinks",
		},
		{
			name:    "directory",
			tree:    map[string]string{"boot/vmlinuz/x": "K", "boot/initrd.img": "I"},
			wantErr: "is a directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := bootImage(t, tt.tree)
			dst := t.TempDir()
			kernel, initrd, err := ExtractBoot(context.Background(), img, dst)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct{ path, want string }{{kernel, tt.wantKernel}, {initrd, tt.wantInitrd}} {
				if filepath.Dir(f.path) != dst {
					t.Errorf("%s is not in %s", f.path, dst)
				}
				if got, err := os.ReadFile(f.path); err != nil || string(got) != f.want {
					t.Errorf("%s holds %q (%v), want %q", f.path, got, err, f.want)
				}
			}
		})
	}
}

func TestExtractBootNotAnImage(t *testing.T) {
	f := filepath.Join(t.TempDir(), "zeros.img")
	if err := os.WriteFile(f, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ExtractBoot(context.Background(), f, t.TempDir()); err == nil || !strings.Contains(err.Error(), "partition table") {
		t.Fatalf("err = %v, want one about the missing partition table", err)
	}
}
