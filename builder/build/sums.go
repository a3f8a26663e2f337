package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/homecloud/homecloud/internal/cluster"
)

// hashImage returns the SHA-256 of a (sparse) image. Holes are hashed
// from a zero buffer instead of being read: the kernel would only copy
// zero pages to us.
func hashImage(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	buf := make([]byte, 1<<20)
	zeros := make([]byte, 1<<20)
	size := st.Size()
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			data = size
		} else if err != nil {
			return "", fmt.Errorf("hash %s: seek data: %w", path, err)
		}
		for off < data {
			n := min(int64(len(zeros)), data-off)
			h.Write(zeros[:n])
			off += n
		}
		if off >= size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return "", fmt.Errorf("hash %s: seek hole: %w", path, err)
		}
		if _, err := io.CopyBuffer(h, io.NewSectionReader(f, data, hole-data), buf); err != nil {
			return "", fmt.Errorf("hash %s: %w", path, err)
		}
		off = hole
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeSums writes SHA256SUMS in sha256sum's format, atomically.
func writeSums(out string, images []Image) error {
	var b strings.Builder
	for _, img := range images {
		fmt.Fprintf(&b, "%s  %s\n", img.SHA256, filepath.Base(img.Path))
	}
	return cluster.WriteFileAtomic(filepath.Join(out, SumsFile), []byte(b.String()), 0o644)
}
