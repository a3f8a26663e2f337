package diskimage

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/ulikunitz/xz"
)

// OpenXZ returns a streaming reader of the decompressed contents of the
// .xz file at path.
//
// It runs xz(1) when it is installed: measured on a 200 MB image it
// decompresses several times faster than github.com/ulikunitz/xz (and
// in parallel for multi-block files); the pure-Go reader is the
// fallback. Close reports a failed or truncated stream.
func OpenXZ(ctx context.Context, path string) (io.ReadCloser, error) {
	if _, err := exec.LookPath("xz"); err == nil {
		return openXZExec(ctx, path)
	}
	return openXZGo(path)
}

func openXZGo(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open xz: %w", err)
	}
	if err := checkXZFooter(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r, err := xz.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a valid xz file: %w", path, err)
	}
	return &goXZ{r: r, f: f, path: path}, nil
}

// checkXZFooter looks for the stream footer magic at the end of the file
// (after stream padding): ulikunitz/xz v0.5.15 reports a clean EOF for a
// file truncated at a block boundary, so it would pass a half download.
func checkXZFooter(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	end := st.Size()
	tail := make([]byte, 4)
	for end >= 12 {
		if _, err := f.ReadAt(tail, end-4); err != nil {
			return fmt.Errorf("read xz footer: %w", err)
		}
		if !bytes.Equal(tail, []byte{0, 0, 0, 0}) {
			break
		}
		end -= 4 // stream padding
	}
	if end < 12 || tail[2] != 'Y' || tail[3] != 'Z' {
		return fmt.Errorf("truncated or not an xz file (no stream footer at its end): download it again")
	}
	return nil
}

type goXZ struct {
	r    *xz.Reader
	f    *os.File
	path string
}

func (g *goXZ) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("decompress %s: %w", g.path, err)
	}
	return n, err
}

func (g *goXZ) Close() error { return g.f.Close() }

func openXZExec(ctx context.Context, path string) (io.ReadCloser, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open xz: %w", err)
	}
	// -T0 lets xz ≥ 5.4 decompress multi-block files in parallel.
	cmd := exec.CommandContext(ctx, "xz", "--decompress", "--stdout", "--threads=0", "--", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("xz %s: %w", path, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("xz %s: %w", path, err)
	}
	return &execXZ{cmd: cmd, out: out, stderr: &stderr, path: path}, nil
}

type execXZ struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr *bytes.Buffer
	path   string
	eof    bool
}

func (e *execXZ) Read(p []byte) (int, error) {
	n, err := e.out.Read(p)
	if err == io.EOF {
		e.eof = true
		// A corrupt stream ends early: report it here, not as a clean EOF.
		if werr := e.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (e *execXZ) wait() error {
	if e.cmd.ProcessState != nil {
		return nil
	}
	if err := e.cmd.Wait(); err != nil {
		return fmt.Errorf("decompress %s: xz: %v: %s", e.path, err, strings.TrimSpace(e.stderr.String()))
	}
	return nil
}

// Close stops xz if the stream was not read to its end.
func (e *execXZ) Close() error {
	if !e.eof && e.cmd.ProcessState == nil {
		_ = e.cmd.Process.Kill()
		_ = e.cmd.Wait()
		return nil
	}
	return e.wait()
}

// DecompressXZ writes the decompressed contents of the .xz file src to
// dst as a sparse file (zero blocks become holes) and fsyncs it.
func DecompressXZ(ctx context.Context, src, dst string) error {
	r, err := OpenXZ(ctx, src)
	if err != nil {
		return err
	}
	defer r.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("decompress %s: %w", src, err)
	}
	w := newSparseWriter(out, nil)
	n, err := io.Copy(w, &ctxReader{ctx, r})
	if err == nil {
		err = w.finish(n)
	}
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("decompress %s to %s: %w", src, dst, err)
	}
	return nil
}

// CopyBase copies a base image to dst sparsely, decompressing it first
// if it is xz-compressed (recognised by its magic, not its name).
func CopyBase(ctx context.Context, src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("base image: %w", err)
	}
	head := make([]byte, len(xzMagic))
	_, err = io.ReadFull(f, head)
	f.Close()
	if err == nil && bytes.Equal(head, xzMagic) {
		return DecompressXZ(ctx, src, dst)
	}
	return SparseCopy(ctx, src, dst)
}
