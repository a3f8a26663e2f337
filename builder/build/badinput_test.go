package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/builder/secrets"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/internal/testimage"
)

// dirState lists what is in dir ("" entries for a missing dir).
func dirState(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Every bad input is one clear message naming the flag, exit status 2,
// and nothing in --out: checked through the command a user runs.
func TestBadInputsExitTwoAndWriteNothing(t *testing.T) {
	f := newFixture(t)
	bin := buildCommand(t)
	good := testimage.Make(t, testimage.Options{})
	gptNoExt4 := testimage.Make(t, testimage.Options{GPT: true, NoExt4: true})
	notDisk := filepath.Join(t.TempDir(), "random.img")
	writeFile(t, notDisk, strings.Repeat("this is not a disk image\n", 400000))
	badKey := filepath.Join(t.TempDir(), "id_ed25519.pub")
	writeFile(t, badKey, "ssh-ed25519 AAAAnot-base64!! me@laptop\n")
	noKeepalived := t.TempDir()
	makeDeb(t, filepath.Join(noKeepalived, "libnl-3-200_3.7.0-0.2_arm64.deb"), "libnl-3-200", "3.7.0-0.2")
	static := []string{"--network", "10.20.0.0/24", "--gateway", "10.20.0.1", "--first-ip", "10.20.0.11"}

	tests := []struct {
		name  string
		args  []string
		field string
	}{
		{"no nodes", []string{"--nodes", "0"}, "--nodes"},
		{"VIP outside the subnet", append(static, "--vip", "10.30.0.10"), "--vip"},
		{"VIP is a node's address", append(static, "--vip", "10.20.0.12"), "--vip"},
		{"gateway is a node's address", []string{"--network", "10.20.0.0/24", "--gateway", "10.20.0.12", "--first-ip", "10.20.0.11"}, "--gateway"},
		{"more nodes than addresses", []string{"--network", "10.20.0.0/29", "--gateway", "10.20.0.1", "--first-ip", "10.20.0.4", "--nodes", "6"}, "--nodes"},
		{"malformed ssh key", []string{"--ssh-key", badKey}, "--ssh-key"},
		{"base is not a disk", []string{"--base-image", notDisk}, "--base-image"},
		{"GPT without ext4", []string{"--base-image", gptNoExt4}, "--base-image"},
		{"unknown board", []string{"--board", "rpi4"}, "--board"},
		{"debs without keepalived", []string{"--debs", noKeepalived}, "--debs"},
		{"k3s images of unknown kind", []string{"--k3s-images", f.keyFile}, "--k3s-images"},
		{"real k3s for x86", []string{"--k3s-binary", bin, "--test-k3s", ""}, "--k3s-binary"},
		{"offline without debs", []string{"--offline", "--debs", ""}, "--debs"},
		{"offline without k3s", []string{"--offline", "--test-k3s", ""}, "--k3s-binary"},
		{"offline without k3s images", []string{"--offline", "--test-k3s", "", "--k3s-binary", f.k3s}, "--k3s-images"},
		{"bare base, no u-boot files", []string{"--board", "pine64", "--uboot-dir", t.TempDir()}, "--uboot-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, existing := range []bool{false, true} {
				out := filepath.Join(t.TempDir(), "out")
				if existing {
					if err := os.Mkdir(out, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				args := append([]string{"build", "--board", "qemu-virt", "--nodes", "2", "--base-image", good, "--out", out}, f.args()...)
				args = append(args, tt.args...)
				cmd := exec.Command(bin, args...)
				cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(f.dir, "xdg"))
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != 2 {
					t.Fatalf("exit %v, want status 2\nstderr:\n%s", err, stderr.String())
				}
				if !strings.Contains(stderr.String(), tt.field+":") {
					t.Errorf("stderr does not name %s:\n%s", tt.field, stderr.String())
				}
				if got := dirState(t, out); len(got) > 0 || (!existing && got != nil) {
					t.Errorf("--out has %q after a usage error", got)
				}
				if _, err := os.Stat(out); existing == errors.Is(err, os.ErrNotExist) {
					t.Errorf("--out existed before: %v, after: %v", existing, err)
				}
			}
		})
	}
}

// A download that does not match its pinned digest is refused before
// anything is written, and the cache keeps nothing of it.
func TestDownloadChecksumMismatch(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	served := fakeELF("a tampered k3s")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(served) }))
	t.Cleanup(srv.Close)
	good := sha256.Sum256(fakeELF("the real k3s"))

	out := filepath.Join(t.TempDir(), "out")
	s := parseSpec(t, []string{"--board", "qemu-virt", "--nodes", "1", "--base-image", base, "--out", out,
		"--ssh-key", f.keyFile, "--debs", f.debs, "--k3s-images", f.images})
	opts := f.opts()
	opts.K3s = &Download{Version: "test", URL: srv.URL + "/k3s-arm64", SHA256: hex.EncodeToString(good[:])}
	opts.HTTPClient = srv.Client()
	_, err := Run(context.Background(), s, opts)
	var ue *spec.UsageError
	if !errors.As(err, &ue) || ue.Field != "--k3s-binary" || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Fatalf("Run: %v, want a --k3s-binary usage error about the digest", err)
	}
	if got := dirState(t, out); got != nil {
		t.Errorf("--out was made: %q", got)
	}
	if cached, _ := filepath.Glob(filepath.Join(f.cache, "sha256", hex.EncodeToString(good[:])+"*")); len(cached) != 0 {
		t.Errorf("the bad download is in the cache: %v", cached)
	}

	// The matching file is downloaded, cached and baked.
	right := sha256.Sum256(served)
	opts.K3s.SHA256 = hex.EncodeToString(right[:])
	res, err := Run(context.Background(), s, opts)
	if err != nil {
		t.Fatalf("Run with the right digest: %v", err)
	}
	if got := cat(t, res.Images[0].Path, k3sBinaryPath); got != string(served) {
		t.Errorf("k3s in the image is %q", got)
	}
}

// Building into an --out that holds another cluster's secrets is a usage
// error (exit 2) that changes nothing there: mixing two clusters' keys
// would make images whose nodes refuse each other.
func TestOtherClusterInOutExitsTwo(t *testing.T) {
	f := newFixture(t)
	bin := buildCommand(t)
	base := testimage.Make(t, testimage.Options{})
	out := filepath.Join(t.TempDir(), "out")
	build := func(name string) (int, string) {
		args := append([]string{"build", "--board", "qemu-virt", "--nodes", "1", "--base-image", base, "--out", out, "--name", name}, f.args()...)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+filepath.Join(f.dir, "xdg"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stderr.String()
	}
	if code, stderr := build("home"); code != 0 {
		t.Fatalf("first build: exit %d\n%s", code, stderr)
	}
	before := dirState(t, out)
	sums, _ := os.ReadFile(filepath.Join(out, SumsFile))
	code, stderr := build("work")
	if code != 2 || !strings.Contains(stderr, "--name:") || !strings.Contains(stderr, `"home"`) {
		t.Errorf("build of another cluster into the same --out: exit %d, want 2 naming --name and the cluster there\n%s", code, stderr)
	}
	if after := dirState(t, out); !slices.Equal(before, after) {
		t.Errorf("--out changed: %q, then %q", before, after)
	}
	if now, _ := os.ReadFile(filepath.Join(out, SumsFile)); !bytes.Equal(now, sums) {
		t.Error("SHA256SUMS changed")
	}
}

// An --out with a cluster/ directory homecloud did not make is not ours to
// write into: a usage error on --out, and --out is left as it was.
func TestForeignClusterDirIsUsageError(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	out := filepath.Join(t.TempDir(), "out")
	if err := os.MkdirAll(filepath.Join(out, secrets.DirName), 0o755); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, out)
	_, err := Run(context.Background(), parseSpec(t, f.args("--board", "qemu-virt", "--nodes", "1", "--base-image", base, "--out", out)), f.opts())
	var ue *spec.UsageError
	if !errors.As(err, &ue) || ue.Field != "--out" || !strings.Contains(err.Error(), "not a homecloud cluster directory") {
		t.Fatalf("err = %v, want a usage error on --out", err)
	}
	if after := dirState(t, out); !slices.Equal(before, after) {
		t.Errorf("--out changed: %q, then %q", before, after)
	}
}
