package testimage

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func debugfs(t *testing.T, img, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, fmt.Sprintf("%s?offset=%d", img, RootOffset)).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", request, err, out)
	}
	return string(out)
}

func TestMakeExt4(t *testing.T) {
	img := Make(t, Options{WithBootloader: true})

	dump, err := exec.Command("sfdisk", "--dump", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dump), "label: dos") || !strings.Contains(string(dump), "start=        8192") {
		t.Errorf("sfdisk --dump: want an MBR partition at sector 8192, got\n%s", dump)
	}
	if out, err := exec.Command("e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", img, RootOffset)).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	// Every big directory must carry EXT4_INDEX_FL (0x1000), otherwise the
	// fixture would not exercise htree handling.
	for _, dir := range []string{"/etc", "/usr/bin", "/lib/systemd/system"} {
		out := debugfs(t, img, "stat "+dir+"/")
		var flags uint32
		i := strings.Index(out, "Flags: ")
		if i < 0 {
			t.Fatalf("stat %s: no Flags in\n%s", dir, out)
		}
		fmt.Sscanf(out[i+len("Flags: "):], "0x%x", &flags)
		if flags&0x1000 == 0 {
			t.Errorf("%s: flags %#x lack the htree INDEX flag", dir, flags)
		}
	}
	if out := debugfs(t, img, "cat /etc/passwd"); !strings.Contains(out, "root:x:0:0:") {
		t.Errorf("/etc/passwd lacks root:\n%s", out)
	}
	if out := debugfs(t, img, "stat /etc/shadow"); !strings.Contains(out, "Mode:  0640") {
		t.Errorf("/etc/shadow mode:\n%s", out)
	}

	f, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f[BootloaderOffset:BootloaderEnd], BootloaderBytes()) {
		t.Error("bootloader region does not hold BootloaderBytes")
	}
}

func TestMakeVariants(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		label string
	}{
		{"gpt", Options{GPT: true}, "label: gpt"},
		{"raw", Options{NoExt4: true}, "label: dos"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := Make(t, tc.opts)
			dump, err := exec.Command("sfdisk", "--dump", img).Output()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(dump), tc.label) {
				t.Errorf("want %q in\n%s", tc.label, dump)
			}
			magic := make([]byte, 2)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.ReadAt(magic, RootOffset+1024+56); err != nil {
				t.Fatal(err)
			}
			isExt4 := magic[0] == 0x53 && magic[1] == 0xEF
			if isExt4 == tc.opts.NoExt4 {
				t.Errorf("ext4 magic present=%v, NoExt4=%v", isExt4, tc.opts.NoExt4)
			}
		})
	}
}
