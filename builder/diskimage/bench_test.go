package diskimage

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkSparseCopy copies a 1 GiB image holding 256 MiB of data in
// 1 MiB islands (the shape of a base image: data, then holes); the
// reported MB/s is of data copied.
func BenchmarkSparseCopy(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src.img")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.NewChaCha8([32]byte{})
	const island, data, size = 1 << 20, 256 << 20, 1 << 30
	for off := int64(0); off < data*4; off += 4 * island {
		if _, err := io.Copy(io.NewOffsetWriter(f, off), io.LimitReader(rnd, island)); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	dst := filepath.Join(dir, "dst.img")
	b.SetBytes(data)
	for b.Loop() {
		if err := SparseCopy(context.Background(), src, dst); err != nil {
			b.Fatal(err)
		}
	}
}
