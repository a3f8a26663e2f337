package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/homecloud/homecloud/builder/diskimage"
)

// maxSymlinks bounds symlink chains, as the kernel's ELOOP does.
const maxSymlinks = 8

// ExtractBoot copies the kernel and initrd the image would boot,
// /boot/vmlinuz and /boot/initrd.img (symlinks followed), out of the image's
// ext4 root partition into dstDir. It reads the file system with e2fsprogs'
// debugfs, so it needs neither root nor a loop device.
func ExtractBoot(ctx context.Context, image, dstDir string) (kernel, initrd string, err error) {
	layout, err := diskimage.Inspect(image)
	if err != nil {
		return "", "", fmt.Errorf("qemu: extract boot files: %w", err)
	}
	if _, err := exec.LookPath("debugfs"); err != nil {
		return "", "", fmt.Errorf("qemu: extract boot files: debugfs not found: apt-get install e2fsprogs")
	}
	if err := os.MkdirAll(dstDir, 0o755); err != nil {
		return "", "", fmt.Errorf("qemu: extract boot files: %w", err)
	}
	fs := debugfs{dev: fmt.Sprintf("%s?offset=%d", image, layout.RootOffset)}
	for _, f := range []struct {
		src string
		dst *string
	}{{"/boot/vmlinuz", &kernel}, {"/boot/initrd.img", &initrd}} {
		target, err := fs.resolve(ctx, f.src)
		if err != nil {
			return "", "", fmt.Errorf("qemu: extract %s from %s: %w", f.src, image, err)
		}
		*f.dst = filepath.Join(dstDir, path.Base(f.src))
		if err := fs.dump(ctx, target, *f.dst); err != nil {
			return "", "", fmt.Errorf("qemu: extract %s (%s) from %s: %w", f.src, target, image, err)
		}
	}
	return kernel, initrd, nil
}

// debugfs reads one ext4 file system read-only. debugfs exits 0 even when
// a command fails (DESIGN.md §6), so every answer is checked by content.
type debugfs struct{ dev string }

func (d debugfs) run(ctx context.Context, cmd string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	c := exec.CommandContext(ctx, "debugfs", "-R", cmd, d.dev)
	c.Stdout, c.Stderr = &o, &e
	if err := c.Run(); err != nil {
		return "", "", fmt.Errorf("debugfs -R %q %s: %w: %s", cmd, d.dev, err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), nil
}

var (
	typeRE     = regexp.MustCompile(`Type: (\S+)`)
	fastLinkRE = regexp.MustCompile(`Fast link dest: "(.*)"`)
)

// resolve follows symlinks from p to a regular file's absolute path.
func (d debugfs) resolve(ctx context.Context, p string) (string, error) {
	for range maxSymlinks {
		out, errOut, err := d.run(ctx, "stat "+quote(p))
		if err != nil {
			return "", err
		}
		m := typeRE.FindStringSubmatch(out)
		if m == nil {
			return "", fmt.Errorf("%s not found in the root file system: %s", p, lastLine(errOut))
		}
		switch m[1] {
		case "regular":
			return p, nil
		case "symlink":
		default:
			return "", fmt.Errorf("%s is a %s, want a file or a symlink to one", p, m[1])
		}
		var dest string
		if f := fastLinkRE.FindStringSubmatch(out); f != nil {
			dest = f[1]
		} else { // a long target is stored in a data block
			if dest, _, err = d.run(ctx, "cat "+quote(p)); err != nil {
				return "", err
			}
		}
		if dest == "" {
			return "", fmt.Errorf("symlink %s has an empty target", p)
		}
		if !path.IsAbs(dest) {
			dest = path.Join(path.Dir(p), dest)
		}
		p = path.Clean(dest)
	}
	return "", fmt.Errorf("more than %d symlinks from %s", maxSymlinks, p)
}

// dump copies the file p out to dst, through a temporary file.
func (d debugfs) dump(ctx context.Context, p, dst string) error {
	tmp := dst + ".tmp"
	os.Remove(tmp)
	_, errOut, err := d.run(ctx, "dump "+quote(p)+" "+quote(tmp))
	if err != nil {
		return err
	}
	st, err := os.Stat(tmp)
	if err != nil || st.Size() == 0 {
		os.Remove(tmp)
		return fmt.Errorf("debugfs wrote nothing: %s", lastLine(errOut))
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	return nil
}

// quote protects a path in a debugfs command line, which splits on spaces.
func quote(p string) string { return `"` + p + `"` }

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
