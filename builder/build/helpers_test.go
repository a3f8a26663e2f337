package build

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/homecloud/homecloud/builder/ext4fs"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/internal/testimage"
)

const rootOff = testimage.RootOffset

// requireTools skips, naming the program, when a tool the tests build or
// check with is missing.
func requireTools(t testing.TB, extra ...string) {
	t.Helper()
	testimage.RequireTools(t)
	for _, tool := range append([]string{"e2fsck", "sfdisk", "debugfs", "sha256sum", "xz"}, extra...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not found in PATH", tool)
		}
	}
}

// fixture holds the local inputs of a build.
type fixture struct {
	dir, keyFile, k3s, images, debs, cache string
	firstboot                              []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	requireTools(t, "dpkg-deb")
	dir := t.TempDir()
	f := &fixture{
		dir:       dir,
		keyFile:   filepath.Join(dir, "admin.pub"),
		k3s:       filepath.Join(dir, "k3s-arm64"),
		images:    filepath.Join(dir, "k3s-airgap-images-arm64.tar.zst"),
		debs:      filepath.Join(dir, "debs"),
		cache:     filepath.Join(dir, "cache"),
		firstboot: fakeELF("homecloud-firstboot test payload"),
	}
	writeFile(t, f.keyFile, "# the family admin\n"+pubKey(t, "admin@laptop")+"\n"+pubKey(t, "phone")+"\n")
	writeFile(t, f.k3s, string(fakeELF("k3s stand-in")))
	writeFile(t, f.images, "not really zstd, k3s goes by the name")
	makeDeb(t, filepath.Join(f.debs, "keepalived_2.2.7-1_arm64.deb"), "keepalived", "1:2.2.7-1")
	makeDeb(t, filepath.Join(f.debs, "libnl-3-200_3.7.0-0.2_arm64.deb"), "libnl-3-200", "3.7.0-0.2")
	return f
}

// fakeELF is the header of a 64-bit arm64 executable followed by tag:
// enough for the builder's architecture check, recognisable in an image.
func fakeELF(tag string) []byte {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 2, 1, 1                 // 64-bit, little-endian, version 1
	binary.LittleEndian.PutUint16(h[16:], 2)   // ET_EXEC
	binary.LittleEndian.PutUint16(h[18:], 183) // EM_AARCH64
	binary.LittleEndian.PutUint32(h[20:], 1)
	binary.LittleEndian.PutUint16(h[52:], 64) // e_ehsize
	return append(h, tag...)
}

func pubKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))) + " " + comment
}

func writeFile(t testing.TB, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// makeDeb builds a real (empty) arm64 binary package with dpkg-deb.
func makeDeb(t *testing.T, out, pkg, version string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), pkg)
	writeFile(t, filepath.Join(root, "DEBIAN", "control"), fmt.Sprintf(
		"Package: %s\nVersion: %s\nArchitecture: arm64\nMaintainer: test <test@example.org>\nDescription: test package\n", pkg, version))
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("dpkg-deb", "-Zgzip", "--root-owner-group", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
}

// args is a command line for the fixture's inputs.
func (f *fixture) args(extra ...string) []string {
	return append([]string{"--ssh-key", f.keyFile, "--test-k3s", f.k3s, "--debs", f.debs}, extra...)
}

func (f *fixture) opts() Options {
	return Options{
		Firstboot: func() ([]byte, error) { return f.firstboot, nil },
		CacheDir:  f.cache,
		Progress:  io.Discard,
	}
}

func parseSpec(t *testing.T, args []string) *spec.Spec {
	t.Helper()
	s, err := spec.Parse(args, io.Discard)
	if err != nil {
		t.Fatalf("spec.Parse(%q): %v", args, err)
	}
	return s
}

func run(t *testing.T, f *fixture, args ...string) *Result {
	t.Helper()
	res, err := Run(context.Background(), parseSpec(t, f.args(args...)), f.opts())
	if err != nil {
		t.Fatalf("Run(%q): %v", args, err)
	}
	return res
}

// armbianize adds what an Armbian or Debian base has and the test image
// lacks: networkd's units, a root autologin drop-in, a machine-id.
func armbianize(t *testing.T, img string) {
	t.Helper()
	fsys, err := ext4fs.Open(context.Background(), img, rootOff)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"/usr/lib/systemd/system/systemd-networkd.service": "[Unit]\nDescription=Network Configuration\n[Service]\nExecStart=!!/lib/systemd/systemd-networkd\n" +
			"[Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket\nAlso=systemd-networkd-wait-online.service\nAlias=dbus-org.freedesktop.network1.service\n",
		"/usr/lib/systemd/system/systemd-networkd.socket":              "[Socket]\nReceiveBuffer=128M\n[Install]\nWantedBy=sockets.target\n",
		"/usr/lib/systemd/system/systemd-networkd-wait-online.service": "[Service]\nType=oneshot\n[Install]\nWantedBy=network-online.target\n",
		"/usr/lib/systemd/system/serial-getty@.service":                "[Service]\nExecStart=-/sbin/agetty -o '-p -- \\\\u' --keep-baud 115200,57600,38400,9600 - $TERM\nType=idle\n",
		"/usr/lib/systemd/system/serial-getty@.service.d/override.conf": "[Service]\nExecStartPre=/bin/sh -c 'exec /bin/sleep 10'\nExecStart=\n" +
			"ExecStart=-/sbin/agetty --noissue --autologin root %I $TERM\nType=idle\n",
		"/etc/machine-id": "0123456789abcdef0123456789abcdef\n",
	}
	for _, d := range []string{"/usr/lib/systemd/system/serial-getty@.service.d"} {
		if err := fsys.MkdirAll(d, 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	for p, data := range files {
		if err := fsys.WriteFile(p, strings.NewReader(data), 0o644, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := fsys.Close(); err != nil {
		t.Fatal(err)
	}
}

// compressXZ writes img.xz beside img, as a base is published, and
// returns its path.
func compressXZ(t testing.TB, img string) string {
	t.Helper()
	if out, err := exec.Command("xz", "-1", "-T0", "-k", img).CombinedOutput(); err != nil {
		t.Fatalf("xz: %v\n%s", err, out)
	}
	return img + ".xz"
}

// Checks with e2fsprogs and util-linux.

func target(img string) string { return fmt.Sprintf("%s?offset=%d", img, rootOff) }

func debugfsR(t testing.TB, img, req string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command("debugfs", "-R", req, target(img))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("debugfs -R %q %s: %v\n%s", req, img, err, stderr.Bytes())
	}
	if strings.Contains(stderr.String(), "File not found") {
		return ""
	}
	return string(out)
}

type inode struct {
	typ      string
	mode     uint32
	uid, gid int
	link     string
	size     int64
}

var (
	statHead  = regexp.MustCompile(`Type: (\S+)\s+Mode:\s+(\d+)`)
	statOwner = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+)`)
	statSize  = regexp.MustCompile(`Size: (\d+)`)
	statLink  = regexp.MustCompile(`Fast link dest: "(.*)"`)
)

// stat returns path's inode as debugfs shows it; ok is false if it does
// not exist.
func stat(t testing.TB, img, p string) (inode, bool) {
	t.Helper()
	out := debugfsR(t, img, fmt.Sprintf("stat %q", p))
	m := statHead.FindStringSubmatch(out)
	if m == nil {
		return inode{}, false
	}
	var in inode
	in.typ = m[1]
	mode, _ := strconv.ParseUint(m[2], 8, 32)
	in.mode = uint32(mode)
	if o := statOwner.FindStringSubmatch(out); o != nil {
		in.uid, _ = strconv.Atoi(o[1])
		in.gid, _ = strconv.Atoi(o[2])
	}
	if s := statSize.FindStringSubmatch(out); s != nil {
		in.size, _ = strconv.ParseInt(s[1], 10, 64)
	}
	if l := statLink.FindStringSubmatch(out); l != nil {
		in.link = l[1]
	}
	return in, true
}

func cat(t testing.TB, img, p string) string {
	t.Helper()
	return debugfsR(t, img, fmt.Sprintf("cat %q", p))
}

func nodeJSON(t testing.TB, img string) cluster.Node {
	t.Helper()
	var n cluster.Node
	if err := json.Unmarshal([]byte(cat(t, img, cluster.NodeConfigPath)), &n); err != nil {
		t.Fatalf("%s: node.json: %v", img, err)
	}
	return n
}

func fsckClean(t testing.TB, img string) {
	t.Helper()
	if out, err := exec.Command("e2fsck", "-fn", target(img)).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// sfdiskDump is the partition table with the image's own name taken out.
func sfdiskDump(t testing.TB, img string) string {
	t.Helper()
	out, err := exec.Command("sfdisk", "--dump", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --dump %s: %v", img, err)
	}
	return strings.ReplaceAll(string(out), img, "IMAGE")
}

func readAt(t testing.TB, img string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// fileContains scans a file for any of the patterns, streaming.
func fileContains(t testing.TB, p string, patterns ...[]byte) bool {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keep := 0
	for _, pat := range patterns {
		keep = max(keep, len(pat)-1)
	}
	buf := make([]byte, 0, 4<<20+keep)
	for {
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		for _, pat := range patterns {
			if bytes.Contains(buf, pat) {
				return true
			}
		}
		if err == io.EOF {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		tail := buf[max(0, len(buf)-keep):]
		buf = append(buf[:0], tail...)
	}
}

// buildCommand builds cmd/homecloud-builder for a test.
func buildCommand(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("skipping: go not found in PATH (needed to build cmd/homecloud-builder)")
	}
	bin := filepath.Join(t.TempDir(), "homecloud-builder")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/homecloud/homecloud/cmd/homecloud-builder")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
