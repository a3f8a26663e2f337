package ext4fs

import (
	"context"
	"errors"
	"io/fs"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

type want struct {
	path    string
	typ     string
	mode    int // permission and special bits, octal as debugfs prints
	uid     int
	gid     int
	content string // regular files
	link    string // symlinks
}

func TestWrite(t *testing.T) {
	bases := newBaseCache(t)
	for _, tc := range []struct {
		name  string
		apply func(FS) error
		want  []want
		gone  []string
	}{
		{
			name: "new file in htree /etc",
			apply: func(f FS) error {
				return f.WriteFile("/etc/homecloud-test.conf", strings.NewReader("a=1\n"), 0o644, 0, 0)
			},
			want: []want{{path: "/etc/homecloud-test.conf", typ: "regular", mode: 0o644, content: "a=1\n"}},
		},
		{
			name: "secret 0600 in new 0700 dir",
			apply: func(f FS) error {
				if err := f.MkdirAll("/etc/homecloud", 0o700, 0, 0); err != nil {
					return err
				}
				return f.WriteFile("/etc/homecloud/node.json", strings.NewReader(`{"name":"node1"}`), 0o600, 0, 0)
			},
			want: []want{
				{path: "/etc/homecloud", typ: "directory", mode: 0o700},
				{path: "/etc/homecloud/node.json", typ: "regular", mode: 0o600, content: `{"name":"node1"}`},
			},
		},
		{
			name: "replace /etc/passwd and /etc/shadow",
			apply: func(f FS) error {
				if err := f.WriteFile("/etc/passwd", strings.NewReader("root:x:0:0:root:/root:/bin/sh\n"), 0o644, 0, 0); err != nil {
					return err
				}
				return f.WriteFile("/etc/shadow", strings.NewReader("root:!:1::::::\n"), 0o640, 0, 42)
			},
			want: []want{
				{path: "/etc/passwd", typ: "regular", mode: 0o644, content: "root:x:0:0:root:/root:/bin/sh\n"},
				{path: "/etc/shadow", typ: "regular", mode: 0o640, gid: 42, content: "root:!:1::::::\n"},
			},
		},
		{
			name: "unit through the /lib -> usr/lib symlink, and its enable link",
			apply: func(f FS) error {
				if err := f.WriteFile("/lib/systemd/system/homecloud-firstboot.service", strings.NewReader("[Unit]\n"), 0o644, 0, 0); err != nil {
					return err
				}
				return f.Symlink("/lib/systemd/system/homecloud-firstboot.service", "/etc/systemd/system/multi-user.target.wants/homecloud-firstboot.service")
			},
			want: []want{
				{path: "/usr/lib/systemd/system/homecloud-firstboot.service", typ: "regular", mode: 0o644, content: "[Unit]\n"},
				{path: "/etc/systemd/system/multi-user.target.wants/homecloud-firstboot.service", typ: "symlink", mode: 0o777,
					link: "/lib/systemd/system/homecloud-firstboot.service"},
				{path: "/lib", typ: "symlink", mode: 0o777, link: "usr/lib"},
			},
		},
		{
			name: "replace a symlink, long target",
			apply: func(f FS) error {
				if err := f.Symlink("/dev/null", "/etc/systemd/system/sshd.service"); err != nil {
					return err
				}
				return f.Symlink("/"+strings.Repeat("long-target/", 20), "/etc/long-link")
			},
			want: []want{
				{path: "/etc/systemd/system/sshd.service", typ: "symlink", mode: 0o777, link: "/dev/null"},
				{path: "/etc/long-link", typ: "symlink", mode: 0o777, link: "/" + strings.Repeat("long-target/", 20)},
			},
		},
		{
			name: "deep MkdirAll with owner, parents root 0755",
			apply: func(f FS) error {
				if err := f.MkdirAll("/var/lib/rancher/k3s/server/manifests", 0o750, 1000, 1001); err != nil {
					return err
				}
				return f.WriteFile("/var/lib/rancher/k3s/server/manifests/a.yaml", strings.NewReader("kind: X\n"), 0o600, 1000, 1001)
			},
			want: []want{
				{path: "/var/lib/rancher", typ: "directory", mode: 0o755},
				{path: "/var/lib/rancher/k3s/server", typ: "directory", mode: 0o755},
				{path: "/var/lib/rancher/k3s/server/manifests", typ: "directory", mode: 0o750, uid: 1000, gid: 1001},
				{path: "/var/lib/rancher/k3s/server/manifests/a.yaml", typ: "regular", mode: 0o600, uid: 1000, gid: 1001, content: "kind: X\n"},
			},
		},
		{
			name: "MkdirAll of an existing dir sets its mode; /tmp keeps sticky",
			apply: func(f FS) error {
				if err := f.MkdirAll("/etc/ssh/sshd_config.d", 0o750, 0, 0); err != nil {
					return err
				}
				return f.MkdirAll("/tmp", 0o777|fs.ModeSticky, 0, 0)
			},
			want: []want{
				{path: "/etc/ssh/sshd_config.d", typ: "directory", mode: 0o750},
				{path: "/etc/ssh/sshd_config.d/.keep", typ: "regular", mode: 0o644, content: ""},
				{path: "/tmp", typ: "directory", mode: 0o1777},
			},
		},
		{
			name: "setuid only when asked, and gone on replace",
			apply: func(f FS) error {
				if err := f.WriteFile("/usr/bin/suid", strings.NewReader("x"), 0o755|fs.ModeSetuid, 0, 0); err != nil {
					return err
				}
				if err := f.WriteFile("/usr/bin/plain", strings.NewReader("x"), 0o755|fs.ModeSetuid, 0, 0); err != nil {
					return err
				}
				return f.WriteFile("/usr/bin/plain", strings.NewReader("y"), 0o755, 0, 0)
			},
			want: []want{
				{path: "/usr/bin/suid", typ: "regular", mode: 0o4755, content: "x"},
				{path: "/usr/bin/plain", typ: "regular", mode: 0o755, content: "y"},
			},
		},
		{
			name: "spaces and quotes in names",
			apply: func(f FS) error {
				if err := f.MkdirAll(`/etc/dir with "space"`, 0o755, 0, 0); err != nil {
					return err
				}
				if err := f.WriteFile(`/etc/dir with "space"/a b.conf`, strings.NewReader("q"), 0o644, 0, 0); err != nil {
					return err
				}
				return f.Symlink(`/target with "q"`, `/etc/dir with "space"/l n`)
			},
			want: []want{
				{path: `/etc/dir with "space"/a b.conf`, typ: "regular", mode: 0o644, content: "q"},
				{path: `/etc/dir with "space"/l n`, typ: "symlink", mode: 0o777, link: `/target with "q"`},
			},
		},
		{
			name: "Remove file, empty dir, missing path",
			apply: func(f FS) error {
				for _, p := range []string{"/root/.not_logged_in_yet", "/home", "/etc/never-was", "/etc/systemd/system/sshd.service"} {
					if err := f.Remove(p); err != nil {
						return err
					}
				}
				return nil
			},
			gone: []string{"/root/.not_logged_in_yet", "/home", "/etc/never-was", "/etc/systemd/system/sshd.service"},
			want: []want{{path: "/usr/lib/systemd/system/ssh.service", typ: "regular", mode: 0o644,
				content: "[Unit]\nDescription=OpenBSD Secure Shell server\n[Install]\nWantedBy=multi-user.target\n"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := bases.fresh(t, 0)
			before := takeSnapshot(t, img)
			f, err := Open(context.Background(), img, off)
			if err != nil {
				t.Fatal(err)
			}
			err = tc.apply(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			fsckClean(t, img)
			before.assertSame(t, img)
			for _, w := range tc.want {
				got := stat(t, img, w.path)
				wantIn := inode{typ: w.typ, mode: w.mode, uid: w.uid, gid: w.gid, link: w.link}
				if got != wantIn {
					t.Errorf("%s: debugfs stat says %+v, want %+v", w.path, got, wantIn)
				}
				if w.typ == "regular" {
					if c := debugfsR(t, img, "cat "+quote(w.path)); c != w.content {
						t.Errorf("%s: content %q, want %q", w.path, c, w.content)
					}
				}
			}
			for _, p := range tc.gone {
				if exists(t, img, p) {
					t.Errorf("%s still exists", p)
				}
			}
		})
	}
}

func TestErrors(t *testing.T) {
	bases := newBaseCache(t)
	for _, tc := range []struct {
		name  string
		apply func(FS) error
		want  []string // all in the error
	}{
		{"file under a file", func(f FS) error {
			return f.WriteFile("/etc/passwd/x", strings.NewReader("x"), 0o644, 0, 0)
		}, []string{"WriteFile /etc/passwd/x", "not a directory"}},
		{"MkdirAll through a file", func(f FS) error {
			return f.MkdirAll("/etc/hostname/sub/dir", 0o755, 0, 0)
		}, []string{"MkdirAll /etc/hostname/sub/dir", "/etc/hostname is not a directory"}},
		{"file over a directory", func(f FS) error {
			return f.WriteFile("/etc/ssh", strings.NewReader("x"), 0o644, 0, 0)
		}, []string{"WriteFile /etc/ssh", "is a directory"}},
		{"symlink over a directory", func(f FS) error {
			return f.Symlink("/x", "/etc/ssh")
		}, []string{"Symlink /etc/ssh", "is a directory"}},
		{"remove a full directory", func(f FS) error {
			return f.Remove("/etc/ssh")
		}, []string{"Remove /etc/ssh", "directory not empty"}},
		{"missing parent", func(f FS) error {
			return f.WriteFile("/opt/none/file", strings.NewReader("x"), 0o644, 0, 0)
		}, []string{"WriteFile /opt/none/file", "write", "not found"}},
		{"relative path", func(f FS) error {
			return f.WriteFile("etc/x", strings.NewReader("x"), 0o644, 0, 0)
		}, []string{"etc/x", "not absolute"}},
		{"unclean path", func(f FS) error {
			return f.MkdirAll("/etc//x/", 0o755, 0, 0)
		}, []string{"not clean"}},
		{"newline in path", func(f FS) error {
			return f.Symlink("/x", "/etc/a\nb")
		}, []string{"control character"}},
		{"type bits in mode", func(f FS) error {
			return f.WriteFile("/etc/x", strings.NewReader("x"), fs.ModeDir|0o755, 0, 0)
		}, []string{"file type bit"}},
		{"negative uid", func(f FS) error {
			return f.WriteFile("/etc/x", strings.NewReader("x"), 0o644, -1, 0)
		}, []string{"out of range"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := bases.fresh(t, 0)
			f, err := Open(context.Background(), img, off)
			if err != nil {
				t.Fatal(err)
			}
			err = tc.apply(f)
			if err == nil {
				err = f.Close()
			} else {
				f.Close()
			}
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestStickyFailure(t *testing.T) {
	img := newBaseCache(t).fresh(t, 0)
	f, err := Open(context.Background(), img, off)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.WriteFile("/etc/passwd/x", strings.NewReader("x"), 0o644, 0, 0); err != nil {
		t.Fatal(err)
	}
	first := f.Flush()
	if first == nil {
		t.Fatal("Flush: no error for a file under a file")
	}
	if err := f.WriteFile("/etc/ok", strings.NewReader("x"), 0o644, 0, 0); err != first {
		t.Errorf("WriteFile after a failure = %v, want the first failure", err)
	}
	if err := f.Close(); err != first {
		t.Errorf("Close = %v, want the first failure", err)
	}
}

func TestReadBack(t *testing.T) {
	img := newBaseCache(t).fresh(t, 0)
	f, err := Open(context.Background(), img, off)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Symlink("/nowhere", "/etc/dangling"); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFile("/etc/hostname", strings.NewReader("node1\n"), 0o644, 0, 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/etc/passwd", true}, {"/etc/dangling", true}, {"/lib/systemd/system/ssh.service", true},
		{"/etc/nope", false}, {"/nope/deeper", false},
	} {
		got, err := f.Exists(tc.path)
		if err != nil || got != tc.want {
			t.Errorf("Exists(%s) = %v, %v; want %v", tc.path, got, err, tc.want)
		}
	}
	if b, err := f.ReadFile("/etc/hostname"); err != nil || string(b) != "node1\n" {
		t.Errorf("ReadFile(/etc/hostname) = %q, %v; want the queued write", b, err)
	}
	if b, err := f.ReadFile("/etc/passwd"); err != nil || !strings.HasPrefix(string(b), "root:x:0:0:") {
		t.Errorf("ReadFile(/etc/passwd) = %q, %v", b, err)
	}
	if _, err := f.ReadFile("/etc/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(/etc/nope) error = %v, want fs.ErrNotExist", err)
	}
	long := "/" + strings.Repeat("a", 100) + "/x" // past the inode: a slow link
	if err := f.Symlink("/dev/null", "/etc/systemd/system/masked.service"); err != nil {
		t.Fatal(err)
	}
	if err := f.Symlink(long, "/etc/long"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, want string
		err        error
	}{
		{"/etc/systemd/system/masked.service", "/dev/null", nil},
		{"/etc/dangling", "/nowhere", nil},
		{"/etc/long", long, nil},
		{"/etc/passwd", "", ErrNotSymlink},
		{"/etc/nope", "", fs.ErrNotExist},
	} {
		got, err := f.Readlink(tc.path)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("Readlink(%s) = %q, %v; want %q, %v", tc.path, got, err, tc.want, tc.err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, img)
}

func TestOpenErrors(t *testing.T) {
	img := newBaseCache(t).fresh(t, 0)
	for _, tc := range []struct {
		name   string
		image  string
		offset int64
		want   string
	}{
		{"offset of the MBR", img, 0, "no ext4 file system at byte offset 0"},
		{"missing image", img + ".nope", off, "no such file"},
		{"question mark", img + "?x", off, "contains '?'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), tc.image, tc.offset)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open error = %v, want %q", err, tc.want)
			}
		})
	}
}

// FreeBytes agrees with dumpe2fs, and what it counts is all debugfs'
// to use: a write reaching into the blocks reserved for root succeeds,
// so the builder compares its files with this count, not with the
// space left after the reservation.
func TestFreeBytes(t *testing.T) {
	img := newBaseCache(t).fresh(t, 0)
	const blockSize = 4096 // testimage makes 4 KiB blocks
	check := func() int64 {
		t.Helper()
		free, err := FreeBytes(img, off)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(freeBlocks(t, img)) * blockSize; free != want {
			t.Fatalf("FreeBytes = %d, dumpe2fs says %d", free, want)
		}
		return free
	}
	free := check()
	out, err := exec.Command("dumpe2fs", "-h", target(img)).Output()
	if err != nil {
		t.Fatalf("dumpe2fs -h: %v", err)
	}
	m := regexp.MustCompile(`(?m)^Reserved block count:\s+(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no reserved block count in dumpe2fs output:\n%s", out)
	}
	reserved, _ := strconv.ParseInt(string(m[1]), 10, 64)
	reserved *= blockSize
	if reserved < 2<<20 {
		t.Fatalf("only %d bytes reserved for root: the test needs a few MiB", reserved)
	}

	src, _ := randomFile(t, free-reserved/2, 7)
	writeAndClose(t, img, func(f FS) error { return f.CopyFile("/fill", src, 0o644, 0, 0) })
	fsckClean(t, img)
	if left := check(); left >= reserved {
		t.Errorf("%d bytes free after the write, want fewer than the %d reserved", left, reserved)
	}

	if _, err := FreeBytes(img, 0); err == nil || !strings.Contains(err.Error(), "no ext4 file system") {
		t.Errorf("FreeBytes at the MBR: %v, want a no-ext4 error", err)
	}
}
