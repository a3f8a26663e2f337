package diskimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const (
	// zeroBlock is the granularity of hole detection: the file system
	// block size of every Linux fs an image is likely to sit on.
	zeroBlock = 4096
	// chunk bounds memory use whatever the image size.
	chunk = 1 << 20
)

// SparseCopy copies src to dst (created or truncated) without loading
// it into memory: holes in src stay holes, and all-zero 4 KiB blocks
// inside data become holes too, so a dense download copies sparsely. dst
// is fsynced; writing to a temp name and renaming is the caller's job.
func SparseCopy(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("sparse copy: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("sparse copy %s: %w", src, err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("sparse copy: %w", err)
	}
	w := newSparseWriter(out)
	if err := copyExtents(ctx, in, st.Size(), w); err != nil {
		out.Close()
		return fmt.Errorf("sparse copy %s to %s: %w", src, dst, err)
	}
	if err := w.finish(st.Size()); err != nil {
		out.Close()
		return fmt.Errorf("sparse copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("sparse copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// copyExtents walks src's data extents with SEEK_DATA/SEEK_HOLE (a file
// system without hole support reports one extent: still correct).
func copyExtents(ctx context.Context, in *os.File, size int64, w *sparseWriter) error {
	fd := int(in.Fd())
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			return fmt.Errorf("seek data at %d: %w", off, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("seek hole at %d: %w", data, err)
		}
		if err := w.seek(data); err != nil {
			return err
		}
		if _, err := io.Copy(w, &ctxReader{ctx, io.NewSectionReader(in, data, hole-data)}); err != nil {
			return err
		}
		off = hole
	}
	return nil
}

// sparseWriter writes a stream at increasing offsets, skipping blocks
// that are all zero. The file must start empty (O_TRUNC).
type sparseWriter struct {
	f     *os.File
	off   int64 // file offset of buf[0]
	buf   []byte
	zeros []byte
}

func newSparseWriter(f *os.File) *sparseWriter {
	return &sparseWriter{f: f, buf: make([]byte, 0, chunk), zeros: make([]byte, zeroBlock)}
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// seek moves the stream to offset off (forward only), leaving a hole.
func (w *sparseWriter) seek(off int64) error {
	if err := w.flush(); err != nil {
		return err
	}
	if off < w.off {
		return fmt.Errorf("sparse writer: seek back from %d to %d", w.off, off)
	}
	w.off = off
	return nil
}

// flush writes buffered data, coalescing non-zero blocks into runs.
func (w *sparseWriter) flush() error {
	b := w.buf
	for start := 0; start < len(b); {
		for start < len(b) && w.isZero(b[start:min(start+zeroBlock, len(b))]) {
			start += zeroBlock
		}
		if start >= len(b) {
			break
		}
		end := start
		for end < len(b) && !w.isZero(b[end:min(end+zeroBlock, len(b))]) {
			end += zeroBlock
		}
		end = min(end, len(b))
		if _, err := w.f.WriteAt(b[start:end], w.off+int64(start)); err != nil {
			return err
		}
		start = end
	}
	w.off += int64(len(b))
	w.buf = w.buf[:0]
	return nil
}

// finish flushes, sets the file's size (a trailing hole writes nothing)
// and fsyncs.
func (w *sparseWriter) finish(size int64) error {
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.f.Truncate(size); err != nil {
		return err
	}
	return w.f.Sync()
}

// isZero compares against a zero block: bytes.Equal is vectorised.
func (w *sparseWriter) isZero(b []byte) bool {
	return bytes.Equal(b, w.zeros[:len(b)])
}

// ctxReader stops a long copy when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
