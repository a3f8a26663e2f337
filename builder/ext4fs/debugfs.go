package ext4fs

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// command is one debugfs command line queued on behalf of an operation.
type command struct {
	line   string
	op     string   // the caller's operation, e.g. "WriteFile /etc/passwd"
	ignore []string // expected messages, e.g. rm of a missing file
}

type debugFS struct {
	ctx     context.Context
	target  string // image?offset=N
	stage   string // temp dir for staged file contents and command files
	pending []command
	staged  []string        // temp files to delete after the next flush
	dirs    map[string]bool // paths known to be directories (links followed)
	dirty   bool            // pending has writes, links or removals
	nstaged int
	runs    int   // debugfs processes started, for tests
	err     error // first failure; sticky
	closed  bool
}

// quote wraps s for debugfs' command parser, which has no escapes but
// reads "" inside quotes as one ".
func quote(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// entry names path so that debugfs follows symlinks in its parent: it
// resolves the parent of "/a/b" without following /a when /a is a link,
// but "/a/./b" has the parent "/a/." which it does follow.
func entry(p string) string {
	dir, base := path.Split(p)
	return quote(dir + "./" + base)
}

// dir names path as a directory, following it if it is a symlink.
func dir(p string) string { return quote(p + "/") }

func (d *debugFS) queue(op string, cmds ...command) {
	for _, c := range cmds {
		c.op = op
		d.pending = append(d.pending, c)
	}
}

func (d *debugFS) usable() error {
	if d.closed {
		return fmt.Errorf("ext4fs: file system already closed")
	}
	return d.err
}

func (d *debugFS) setOwner(p string, mode uint32, uid, gid int) []command {
	return []command{
		{line: fmt.Sprintf("sif %s mode 0%o", p, mode)},
		{line: fmt.Sprintf("sif %s uid %d", p, uid)},
		{line: fmt.Sprintf("sif %s gid %d", p, gid)},
	}
}

func (d *debugFS) MkdirAll(p string, mode fs.FileMode, uid, gid int) error {
	return d.MakeDirs([]Dir{{Path: p, Mode: mode, UID: uid, GID: gid}})
}

func (d *debugFS) MakeDirs(dirs []Dir) error {
	if err := d.usable(); err != nil {
		return err
	}
	modes := make([]uint32, len(dirs))
	paths := make([]string, len(dirs))
	for i, dd := range dirs {
		m, err := unixMode(dd.Mode, 0o040000)
		if err == nil {
			err = checkOwner(dd.UID, dd.GID)
		}
		if err == nil {
			err = checkPath(dd.Path)
		}
		if err != nil {
			return fmt.Errorf("ext4fs: MkdirAll %s: %w", dd.Path, err)
		}
		modes[i], paths[i] = m, dd.Path
	}
	missing, err := d.missingDirs(paths)
	if err != nil {
		return err
	}
	for i, dd := range dirs {
		var cmds []command
		for _, q := range prefixes(dd.Path) {
			if missing[q] && !d.dirs[q] {
				cmds = append(cmds, command{line: "mkdir " + entry(q)})
				d.dirs[q] = true
			}
		}
		d.queue("MkdirAll "+dd.Path, append(cmds, d.setOwner(dir(dd.Path), modes[i], dd.UID, dd.GID)...)...)
	}
	return nil
}

// prefixes returns "/a", "/a/b", "/a/b/c" for "/a/b/c".
func prefixes(p string) []string {
	var out []string
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			out = append(out, p[:i])
		}
	}
	return out
}

// missingDirs returns which prefixes of paths (paths included) do not
// exist yet. debugfs' mkdir of an existing name leaks an inode and a
// block (e2fsprogs 1.47.0: e2fsck then finds an unattached directory),
// so existence is checked first: the cache of known directories answers
// most; one read-only debugfs run looks up all the others. Queued mkdirs
// are in the cache, so only queued writes, links and removals, which
// could change the answer, are flushed first.
func (d *debugFS) missingDirs(paths []string) (map[string]bool, error) {
	asked := map[string]string{} // unknown prefix -> the path it came from
	var unknown []string
	for _, p := range paths {
		for _, q := range prefixes(p) {
			if _, ok := asked[q]; !ok && !d.dirs[q] {
				asked[q] = p
				unknown = append(unknown, q)
			}
		}
	}
	if len(unknown) == 0 {
		return nil, nil
	}
	if d.dirty {
		if err := d.Flush(); err != nil {
			return nil, err
		}
	}
	// Parents before children, so a child of a missing directory is
	// known to be missing whatever debugfs says of it.
	slices.SortFunc(unknown, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b)) })
	cmds := make([]command, len(unknown))
	for i, q := range unknown {
		cmds[i] = command{line: "cd " + dir(q), op: "MkdirAll " + asked[q]}
	}
	msgs, err := d.run(false, cmds)
	if err != nil {
		return nil, err
	}
	missing := map[string]bool{}
	for i, q := range unknown {
		switch {
		case missing[path.Dir(q)] || isNotFound(msgs[i]):
			missing[q] = true
		case msgs[i] == "":
			d.dirs[q] = true
		default:
			return nil, fmt.Errorf("ext4fs: MkdirAll %s: %s is not a directory: %s", asked[q], q, strings.TrimSpace(msgs[i]))
		}
	}
	return missing, nil
}

func (d *debugFS) WriteFile(p string, r io.Reader, mode fs.FileMode, uid, gid int) error {
	op := "WriteFile " + p
	if err := d.usable(); err != nil {
		return err
	}
	if err := d.checkFile(p, mode, uid, gid); err != nil {
		return fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	d.nstaged++
	tmp := filepath.Join(d.stage, fmt.Sprintf("file-%d", d.nstaged))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("ext4fs: %s: stage: %w", op, err)
	}
	d.staged = append(d.staged, tmp)
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("ext4fs: %s: stage: %w", op, err)
	}
	d.queueWrite(op, p, tmp, mode, uid, gid)
	return nil
}

func (d *debugFS) CopyFile(p, src string, mode fs.FileMode, uid, gid int) error {
	op := "CopyFile " + p
	if err := d.usable(); err != nil {
		return err
	}
	if err := d.checkFile(p, mode, uid, gid); err != nil {
		return fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("ext4fs: %s: source %s is not a regular file", op, src)
	}
	if hasControl(abs) {
		return fmt.Errorf("ext4fs: %s: source path %q has a control character", op, abs)
	}
	d.queueWrite(op, p, abs, mode, uid, gid)
	return nil
}

func (d *debugFS) checkFile(p string, mode fs.FileMode, uid, gid int) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if _, err := unixMode(mode, 0o100000); err != nil {
		return err
	}
	return checkOwner(uid, gid)
}

func (d *debugFS) queueWrite(op, p, host string, mode fs.FileMode, uid, gid int) {
	d.dirty = true
	m, _ := unixMode(mode, 0o100000) // checked by checkFile
	// write refuses an existing name: remove it first, which also frees
	// the old blocks. A directory in the way makes rm fail, as it should.
	cmds := []command{
		{line: "rm " + entry(p), ignore: []string{"File not found by ext2_lookup"}},
		{line: fmt.Sprintf("write %s %s", quote(host), entry(p))},
	}
	d.queue(op, append(cmds, d.setOwner(entry(p), m, uid, gid)...)...)
}

func (d *debugFS) Symlink(target, p string) error {
	op := "Symlink " + p
	if err := d.usable(); err != nil {
		return err
	}
	if err := checkPath(p); err != nil {
		return fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	if target == "" || len(target) > maxSymlinkBytes || hasControl(target) {
		return fmt.Errorf("ext4fs: %s: target %q must be 1..%d bytes without control characters", op, target, maxSymlinkBytes)
	}
	d.dirty = true
	d.queue(op,
		command{line: "rm " + entry(p), ignore: []string{"File not found by ext2_lookup"}},
		command{line: fmt.Sprintf("symlink %s %s", entry(p), quote(target))})
	return nil
}

func (d *debugFS) Remove(p string) error {
	op := "Remove " + p
	if err := d.usable(); err != nil {
		return err
	}
	if err := checkPath(p); err != nil {
		return fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	for q := range d.dirs {
		if q == p || strings.HasPrefix(q, p+"/") {
			delete(d.dirs, q)
		}
	}
	d.dirty = true
	// rm takes files and links, rmdir empty directories; whichever does
	// not apply finds nothing (or, for rm, a directory) and says so.
	d.queue(op,
		command{line: "rm " + entry(p), ignore: []string{"File not found by ext2_lookup", "file is a directory"}},
		command{line: "rmdir " + entry(p), ignore: []string{"File not found by ext2_lookup"}})
	return nil
}

func (d *debugFS) Exists(p string) (bool, error) {
	op := "Exists " + p
	if err := checkPath(p); err != nil && p != "/" {
		return false, fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	if err := d.Flush(); err != nil {
		return false, err
	}
	msgs, err := d.run(false, []command{{line: "testi " + quote(p), op: op}})
	if err != nil {
		return false, err
	}
	switch {
	case msgs[0] == "":
		return true, nil
	case isNotFound(msgs[0]):
		return false, nil
	}
	return false, fmt.Errorf("ext4fs: %s: debugfs: %s", op, msgs[0])
}

func (d *debugFS) ReadFile(p string) ([]byte, error) {
	op := "ReadFile " + p
	if err := checkPath(p); err != nil {
		return nil, fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	if err := d.Flush(); err != nil {
		return nil, err
	}
	d.nstaged++
	tmp := filepath.Join(d.stage, fmt.Sprintf("read-%d", d.nstaged))
	defer os.Remove(tmp)
	msgs, err := d.run(false, []command{{line: fmt.Sprintf("dump %s %s", quote(p), quote(tmp)), op: op}})
	if err != nil {
		return nil, err
	}
	if isNotFound(msgs[0]) {
		return nil, fmt.Errorf("ext4fs: %s: %w", op, fs.ErrNotExist)
	}
	if msgs[0] != "" {
		return nil, fmt.Errorf("ext4fs: %s: debugfs: %s", op, msgs[0])
	}
	b, err := os.ReadFile(tmp)
	if err != nil {
		return nil, fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	return b, nil
}

// ErrNotSymlink is Readlink's answer for a path that is not a symlink.
var ErrNotSymlink = errors.New("not a symlink")

func (d *debugFS) Readlink(p string) (string, error) {
	op := "Readlink " + p
	if err := checkPath(p); err != nil {
		return "", fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	if err := d.Flush(); err != nil {
		return "", err
	}
	// debugfs prints a fast link's target only to stdout, among other
	// lines, and cannot dump one; rdump re-creates the link on the host.
	d.nstaged++
	out := filepath.Join(d.stage, fmt.Sprintf("link-%d", d.nstaged))
	if err := os.Mkdir(out, 0o700); err != nil {
		return "", fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	defer os.RemoveAll(out)
	msgs, err := d.run(false, []command{{line: fmt.Sprintf("rdump %s %s", quote(p), quote(out)), op: op}})
	if err != nil {
		return "", err
	}
	if isNotFound(msgs[0]) {
		return "", fmt.Errorf("ext4fs: %s: %w", op, fs.ErrNotExist)
	}
	if msgs[0] != "" {
		return "", fmt.Errorf("ext4fs: %s: debugfs: %s", op, msgs[0])
	}
	target, err := os.Readlink(filepath.Join(out, path.Base(p)))
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) && errors.Is(pe.Err, syscall.EINVAL) {
			return "", fmt.Errorf("ext4fs: %s: %w", op, ErrNotSymlink)
		}
		return "", fmt.Errorf("ext4fs: %s: %w", op, err)
	}
	return target, nil
}

func (d *debugFS) Flush() error {
	if err := d.usable(); err != nil {
		return err
	}
	if len(d.pending) == 0 {
		return nil
	}
	cmds := d.pending
	d.pending, d.dirty = nil, false
	defer d.dropStaged()
	msgs, err := d.run(true, cmds)
	if err != nil {
		d.err = err
		return err
	}
	for i, c := range cmds {
		if msg := unexpected(msgs[i], c.ignore); msg != "" {
			d.err = fmt.Errorf("ext4fs: %s: debugfs %q: %s", c.op, c.line, msg)
			return d.err
		}
	}
	return nil
}

func (d *debugFS) dropStaged() {
	for _, f := range d.staged {
		os.Remove(f)
	}
	d.staged = nil
}

func (d *debugFS) Close() error {
	if d.closed {
		return d.err
	}
	err := d.Flush()
	d.closed = true
	if rerr := os.RemoveAll(d.stage); err == nil && rerr != nil {
		err = fmt.Errorf("ext4fs: remove temp dir: %w", rerr)
	}
	if d.err == nil {
		d.err = err
	}
	return err
}

// unexpected drops the lines of msg that match an ignore pattern.
func unexpected(msg string, ignore []string) string {
	var keep []string
	for _, line := range strings.Split(msg, "\n") {
		if line == "" || containsAny(line, ignore) {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "; ")
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// run feeds cmds to one debugfs process and returns each command's
// error text ("" when it said nothing). debugfs exits 0 even when
// commands fail and prints errors to stderr without naming the command,
// so a marker lookup of a path that cannot exist follows every command:
// its "not found" line on the unbuffered stderr closes that command's
// output.
func (d *debugFS) run(write bool, cmds []command) ([]string, error) {
	tokenBytes := make([]byte, 8)
	if _, err := rand.Read(tokenBytes); err != nil {
		return nil, err
	}
	marker := "/.homecloud-ext4fs-mark-" + hex.EncodeToString(tokenBytes) + "-"
	var script bytes.Buffer
	fmt.Fprintf(&script, "testi %s0\n", marker)
	for i, c := range cmds {
		fmt.Fprintf(&script, "%s\ntesti %s%d\n", c.line, marker, i+1)
	}
	cmdFile := filepath.Join(d.stage, "commands")
	if err := os.WriteFile(cmdFile, script.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("ext4fs: %w", err)
	}
	defer os.Remove(cmdFile)

	args := []string{"-f", cmdFile, d.target}
	if write {
		args = append([]string{"-w"}, args...)
	}
	d.runs++
	cmd := exec.CommandContext(d.ctx, "debugfs", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ext4fs: debugfs %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}

	msgs := make([]string, len(cmds))
	var other strings.Builder // before the first or after the last marker
	n := 0
	sc := bufio.NewScanner(&stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first && strings.HasPrefix(line, "debugfs ") {
			first = false
			continue // version banner
		}
		first = false
		if strings.HasPrefix(line, marker) {
			if want := fmt.Sprintf("%s%d:", marker, n); !strings.HasPrefix(line, want) || !isNotFound(line) {
				return nil, fmt.Errorf("ext4fs: debugfs output out of step at %q", line)
			}
			n++
			continue
		}
		if n >= 1 && n <= len(cmds) {
			msgs[n-1] += line + "\n"
		} else if line != "" {
			other.WriteString(line + "\n")
		}
	}
	if n != len(cmds)+1 || other.Len() > 0 {
		// debugfs could not open the file system, stopped early or
		// warned about it: do not trust the results.
		return nil, fmt.Errorf("ext4fs: debugfs on %s failed: %s", d.target, strings.TrimSpace(stderr.String()))
	}
	return msgs, nil
}
