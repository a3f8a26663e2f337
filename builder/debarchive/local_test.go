package debarchive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makeDeb writes a real Debian binary package: an ar archive holding
// debian-binary, control.tar.gz (with ./control) and data.tar.gz.
func makeDeb(t *testing.T, path, pkg, arch string) {
	t.Helper()
	control := fmt.Sprintf("Package: %s\nVersion: 1:2.0-1\nArchitecture: %s\nMaintainer: test <t@example.invalid>\nDescription: test package\n", pkg, arch)
	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	for _, m := range []struct {
		name string
		data []byte
	}{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", tarGz(t, map[string]string{"./control": control})},
		{"data.tar.gz", tarGz(t, map[string]string{"./usr/share/doc/" + pkg + "/copyright": "test\n"})},
	} {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name+"/", 0, 0, 0, "100644", len(m.data))
		ar.Write(m.data)
		if len(m.data)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	if err := os.WriteFile(path, ar.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tarGz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestLocalDebs(t *testing.T) {
	dir := t.TempDir()
	makeDeb(t, filepath.Join(dir, "keepalived_2.2.7_arm64.deb"), "keepalived", "arm64")
	makeDeb(t, filepath.Join(dir, "libsnmp-base_5.9_all.deb"), "libsnmp-base", "all")
	os.WriteFile(filepath.Join(dir, "README"), []byte("not a deb, not listed"), 0o644)

	got, err := LocalDebs(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []LocalDeb{
		{Path: filepath.Join(dir, "keepalived_2.2.7_arm64.deb"), Name: "keepalived", Version: "1:2.0-1", Architecture: "arm64"},
		{Path: filepath.Join(dir, "libsnmp-base_5.9_all.deb"), Name: "libsnmp-base", Version: "1:2.0-1", Architecture: "all"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("LocalDebs =\n %v\nwant\n %v", got, want)
	}
}

func TestLocalDebsErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr []string
	}{
		{"wrong architecture", func(t *testing.T, dir string) {
			makeDeb(t, filepath.Join(dir, "ok_arm64.deb"), "ok", "arm64")
			makeDeb(t, filepath.Join(dir, "curl_amd64.deb"), "curl", "amd64")
		}, []string{"curl_amd64.deb", "architecture amd64", "arm64 or all"}},
		{"not a deb", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "fake.deb"), []byte("just text"), 0o644)
		}, []string{"fake.deb", "is not a Debian binary package"}},
		{"empty dir", func(t *testing.T, dir string) {}, []string{"no .deb files"}},
		{"missing dir", nil, []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.setup == nil {
				dir = filepath.Join(dir, "absent")
			} else {
				tt.setup(t, dir)
			}
			_, err := LocalDebs(dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
