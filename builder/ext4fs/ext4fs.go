// Package ext4fs puts files into the ext4 root file system inside a disk
// image, at a byte offset, without mounting it (no root, no loop device).
//
// It drives e2fsprogs' debugfs: go-diskfs v1.9.4's ext4 writer corrupts
// htree-indexed directories, which every real root fs has (DESIGN.md §6).
// Changes are queued and applied by one debugfs process per Flush or
// Close, so hundreds of files cost one process, not hundreds.
package ext4fs

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strings"
)

// FS writes into an ext4 file system. Paths are absolute inside it;
// symlinks in parent directories are followed (e.g. /lib -> usr/lib on
// merged-/usr systems), the last component never is.
//
// Writes are queued: a failure shows at the next Flush, Exists, ReadFile
// or Close, as an error naming the operation, its path, the debugfs
// command and debugfs' message. After a failure every call returns it.
// If any call failed, discard the image: the batch may be half applied.
type FS interface {
	// MkdirAll makes path and any missing parents (parents as root:root
	// 0755) and sets path's mode and owner, even if it already existed.
	MkdirAll(path string, mode fs.FileMode, uid, gid int) error
	// MakeDirs is MkdirAll for each of dirs in order, with one look at
	// what exists for all of them.
	MakeDirs(dirs []Dir) error
	// WriteFile creates or replaces the regular file path with r's bytes.
	// r is read to a temp file now; the parent directory must exist.
	WriteFile(path string, r io.Reader, mode fs.FileMode, uid, gid int) error
	// CopyFile is WriteFile from the host file src, which is not copied
	// (use it for big files) and must not change until Flush or Close.
	CopyFile(path, src string, mode fs.FileMode, uid, gid int) error
	// Symlink creates or replaces the symbolic link path -> target,
	// owned by root.
	Symlink(target, path string) error
	// Remove removes a file, a symlink or an empty directory; a missing
	// path is not an error.
	Remove(path string) error
	// Exists reports whether path exists (a dangling symlink does).
	Exists(path string) (bool, error)
	// ReadFile returns the contents of a regular file; a missing file is
	// an error wrapping fs.ErrNotExist.
	ReadFile(path string) ([]byte, error)
	// Readlink returns a symlink's target (a unit mask's is /dev/null);
	// a missing path is an error wrapping fs.ErrNotExist, a regular file
	// one wrapping ErrNotSymlink. Not for directories: debugfs would copy
	// out the whole tree to look.
	Readlink(path string) (string, error)
	// Flush applies the queued writes.
	Flush() error
	// Close flushes, removes temp files and returns the first failure.
	Close() error
}

// Dir is a directory for MakeDirs.
type Dir struct {
	Path     string
	Mode     fs.FileMode
	UID, GID int
}

const (
	ext4Magic       = 0xEF53
	maxUID          = 1<<32 - 2 // (uid_t)-1 means "no change" to chown
	maxSymlinkBytes = 4095
)

// Open opens the ext4 file system that starts at byte offset of image
// (the root partition's offset, see diskimage.Inspect). ctx bounds every
// debugfs run made through the returned FS.
func Open(ctx context.Context, image string, offset int64) (FS, error) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		return nil, fmt.Errorf("ext4fs: debugfs not found in PATH: install e2fsprogs")
	}
	if strings.ContainsAny(image, "?") || hasControl(image) {
		return nil, fmt.Errorf("ext4fs: image path %q contains '?' or a control character, which debugfs cannot take: rename it", image)
	}
	if offset < 0 {
		return nil, fmt.Errorf("ext4fs: negative offset %d for %s", offset, image)
	}
	if err := checkMagic(image, offset); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp("", "homecloud-ext4fs-")
	if err != nil {
		return nil, fmt.Errorf("ext4fs: %w", err)
	}
	if hasControl(stage) {
		os.RemoveAll(stage)
		return nil, fmt.Errorf("ext4fs: temp dir %q has a control character: set TMPDIR", stage)
	}
	return &debugFS{
		ctx:    ctx,
		target: fmt.Sprintf("%s?offset=%d", image, offset),
		stage:  stage,
		dirs:   map[string]bool{},
	}, nil
}

func checkMagic(image string, offset int64) error {
	f, err := os.Open(image)
	if err != nil {
		return fmt.Errorf("ext4fs: %w", err)
	}
	defer f.Close()
	b := make([]byte, 2)
	if _, err := f.ReadAt(b, offset+1024+56); err != nil {
		return fmt.Errorf("ext4fs: read superblock of %s at offset %d: %w", image, offset, err)
	}
	if binary.LittleEndian.Uint16(b) != ext4Magic {
		return fmt.Errorf("ext4fs: %s has no ext4 file system at byte offset %d: pass the root partition's offset (diskimage.Inspect)", image, offset)
	}
	return nil
}

// Superblock fields FreeBytes reads, as byte offsets into the
// superblock (which starts 1024 bytes into the file system).
const (
	sbFreeBlocksLo    = 0x0C
	sbLogBlockSize    = 0x18
	sbFeatureIncompat = 0x60
	sbFreeBlocksHi    = 0x158
	incompat64Bit     = 0x80
	superblockBytes   = 1024
)

// FreeBytes returns the free space of the ext4 file system at byte
// offset of image, read from its superblock: free blocks times block
// size, as dumpe2fs -h shows them. mkfs, e2fsck, the kernel (at unmount)
// and libext2fs, whose every allocation debugfs makes, keep that count
// in step with the block bitmaps.
//
// The count includes the blocks reserved for root (mkfs -m): only the
// kernel holds them back, from unprivileged writers. debugfs allocates
// through libext2fs, whose allocator takes any block free in the bitmap
// and ignores the reservation, so all of them are debugfs' to use.
func FreeBytes(image string, offset int64) (int64, error) {
	if err := checkMagic(image, offset); err != nil {
		return 0, err
	}
	f, err := os.Open(image)
	if err != nil {
		return 0, fmt.Errorf("ext4fs: %w", err)
	}
	defer f.Close()
	sb := make([]byte, superblockBytes)
	if _, err := f.ReadAt(sb, offset+1024); err != nil {
		return 0, fmt.Errorf("ext4fs: read superblock of %s at offset %d: %w", image, offset, err)
	}
	le := binary.LittleEndian
	logSize := le.Uint32(sb[sbLogBlockSize:])
	if logSize > 6 { // ext4 blocks are 1 KiB to 64 KiB
		return 0, fmt.Errorf("ext4fs: %s: superblock at offset %d gives a block size of 2^(10+%d)", image, offset, logSize)
	}
	free := uint64(le.Uint32(sb[sbFreeBlocksLo:]))
	if le.Uint32(sb[sbFeatureIncompat:])&incompat64Bit != 0 {
		free |= uint64(le.Uint32(sb[sbFreeBlocksHi:])) << 32
	}
	return int64(free << (10 + logSize)), nil
}

// checkPath accepts clean absolute paths other than "/" that debugfs'
// command parser can carry inside double quotes.
func checkPath(p string) error {
	switch {
	case p == "" || p[0] != '/':
		return fmt.Errorf("path %q is not absolute", p)
	case path.Clean(p) != p:
		return fmt.Errorf("path %q is not clean (want %q)", p, path.Clean(p))
	case p == "/":
		return fmt.Errorf("path \"/\" cannot be written")
	case hasControl(p):
		return fmt.Errorf("path %q contains a control character (newline, tab, ...), which debugfs cannot take", p)
	}
	for _, c := range strings.Split(p[1:], "/") {
		if len(c) > 255 {
			return fmt.Errorf("path %q: component longer than 255 bytes", p)
		}
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// unixMode turns a permission FileMode into the on-disk i_mode bits for
// a file of type typ (0o100000 regular, 0o040000 directory). Only the
// special bits asked for are set: nothing becomes setuid by accident.
func unixMode(m fs.FileMode, typ uint32) (uint32, error) {
	if m&fs.ModeType != 0 {
		return 0, fmt.Errorf("mode %v has a file type bit: give permissions only", m)
	}
	if extra := m &^ (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); extra != 0 {
		return 0, fmt.Errorf("mode %v has unsupported bits %v", m, extra)
	}
	u := typ | uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u, nil
}

func checkOwner(uid, gid int) error {
	if uid < 0 || uid > maxUID || gid < 0 || gid > maxUID {
		return fmt.Errorf("owner %d:%d out of range 0..%d", uid, gid, maxUID)
	}
	return nil
}

// isNotFound tells debugfs' "no such entry" message apart.
func isNotFound(msg string) bool {
	return strings.Contains(msg, "File not found by ext2_lookup")
}
