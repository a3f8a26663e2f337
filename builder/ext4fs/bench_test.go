package ext4fs

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkWrite measures one node's payload applied by Close: ~200
// small files spread over htree directories, a 70 MB binary, and both.
// Run: go test -run XXX -bench Write ./builder/ext4fs
func BenchmarkWrite(b *testing.B) {
	bases := newBaseCache(b)
	k3s, _ := randomFile(b, 70<<20, 4)
	content := strings.Repeat("x", 2000)
	small := func(f FS) error {
		for i := range 200 {
			dir := []string{"/etc/homecloud", "/usr/bin", "/lib/systemd/system", "/etc/systemd/system/multi-user.target.wants"}[i%4]
			if err := f.MkdirAll(dir, 0o755, 0, 0); err != nil {
				return err
			}
			if err := f.WriteFile(fmt.Sprintf("%s/bench-%03d", dir, i), strings.NewReader(content), 0o644, 0, 0); err != nil {
				return err
			}
		}
		return nil
	}
	large := func(f FS) error {
		if err := f.MkdirAll("/usr/local/bin", 0o755, 0, 0); err != nil {
			return err
		}
		return f.CopyFile("/usr/local/bin/k3s", k3s, 0o755, 0, 0)
	}
	for _, bc := range []struct {
		name  string
		apply []func(FS) error
	}{
		{"200-small", []func(FS) error{small}},
		{"70MB", []func(FS) error{large}},
		{"200-small+70MB", []func(FS) error{small, large}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				img := bases.fresh(b, 160)
				b.StartTimer()
				f, err := Open(context.Background(), img, off)
				if err != nil {
					b.Fatal(err)
				}
				for _, apply := range bc.apply {
					if err := apply(f); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
