package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestHashImage compares hashImage, which maps data extents and hashes
// holes from a buffer, with sha256 of every byte read plainly.
func TestHashImage(t *testing.T) {
	type island struct{ off, n int64 }
	for _, tc := range []struct {
		name    string
		size    int64
		islands []island
	}{
		{"empty", 0, nil},
		{"all hole", 8 << 20, nil},
		{"dense", 3<<20 + 17, []island{{0, 3<<20 + 17}}},
		{"islands and a trailing hole", 64 << 20, []island{{0, 4096}, {1 << 20, 5000}, {40 << 20, 8192}}},
		{"data to the end", 16 << 20, []island{{12 << 20, 4 << 20}}},
		{"extent longer than a mapping", 80 << 20, []island{{4096, mapWindow + 3<<20}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "img")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			rnd := rand.NewChaCha8([32]byte{7})
			for _, is := range tc.islands {
				if _, err := io.Copy(io.NewOffsetWriter(f, is.off), io.LimitReader(rnd, is.n)); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Truncate(tc.size); err != nil {
				t.Fatal(err)
			}
			f.Close()
			got, err := hashImage(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			f, err = os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				t.Fatal(err)
			}
			if want := hex.EncodeToString(h.Sum(nil)); got != want {
				t.Errorf("hashImage = %s, want %s", got, want)
			}
		})
	}
}

// BenchmarkHashImage hashes a 2 GiB image holding 600 MiB of data in
// 8 MiB islands, the shape of the Debian-built base: the SHA256SUMS cost
// of one node image, which bench-build's copies do not pay.
// Run: go test -run XXX -bench HashImage ./builder/build
func BenchmarkHashImage(b *testing.B) {
	p := filepath.Join(b.TempDir(), "img")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.NewChaCha8([32]byte{})
	const island, data, size = 8 << 20, 600 << 20, 2 << 30
	for off := int64(0); off < data*3; off += 3 * island {
		if _, err := io.Copy(io.NewOffsetWriter(f, off), io.LimitReader(rnd, island)); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.SetBytes(size)
	for b.Loop() {
		if _, err := hashImage(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
}
