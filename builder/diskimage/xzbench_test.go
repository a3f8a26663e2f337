package diskimage

import (
	"context"
	"io"
	"os"
	"testing"
)

// BenchmarkXZ compares xz(1) with the pure-Go decoder on the file named
// by HOMECLOUD_XZ_BENCH (e.g. a 200 MB .img.xz); it skips without one.
func BenchmarkXZ(b *testing.B) {
	path := os.Getenv("HOMECLOUD_XZ_BENCH")
	if path == "" {
		b.Skip("set HOMECLOUD_XZ_BENCH to an .xz file to compare decoders")
	}
	for _, tc := range []struct {
		name string
		open func() (io.ReadCloser, error)
	}{
		{"exec", func() (io.ReadCloser, error) { return openXZExec(context.Background(), path) }},
		{"go", func() (io.ReadCloser, error) { return openXZGo(path) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				r, err := tc.open()
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Close(); err != nil {
					b.Fatal(err)
				}
				b.SetBytes(n)
			}
		})
	}
}
