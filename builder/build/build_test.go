package build

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/homecloud/homecloud/boards"
	"github.com/homecloud/homecloud/builder/secrets"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/builder/stacksecrets"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/internal/testimage"
	"github.com/homecloud/homecloud/overlays/stack"
)

// checkImages asserts what every build must give, with tools no one here
// wrote; it returns the node configs, node1 first.
func checkImages(t *testing.T, f *fixture, res *Result, base, board string, nodes int) []cluster.Node {
	t.Helper()
	if len(res.Images) != nodes {
		t.Fatalf("%d images, want %d", len(res.Images), nodes)
	}
	b, err := boards.Load(board)
	if err != nil {
		t.Fatal(err)
	}
	baseTable := sfdiskDump(t, base)
	keys, _ := os.ReadFile(f.keyFile)
	var configs []cluster.Node
	var stackSecrets map[string]string
	var firstStack string
	for i, img := range res.Images {
		t.Run(img.Node, func(t *testing.T) {
			if want := filepath.Join(res.Out, fmt.Sprintf("%s.img", img.Node)); img.Path != want {
				t.Errorf("image path %s, want %s", img.Path, want)
			}
			// An image holds the node's keys, the k3s token and CAs, and the
			// stack's passwords: no other local user may read it.
			if st, err := os.Stat(img.Path); err != nil {
				t.Error(err)
			} else if st.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", img.Path, st.Mode())
			}
			fsckClean(t, img.Path)
			if got := sfdiskDump(t, img.Path); got != baseTable {
				t.Errorf("partition table changed:\nbase:\n%s\nimage:\n%s", baseTable, got)
			}
			for _, c := range []struct {
				path, typ string
				mode      uint32
			}{
				{"/usr/local/bin/homecloud-firstboot", "regular", 0o755},
				{"/usr/local/bin/k3s", "regular", 0o755},
				{cluster.NodeConfigPath, "regular", 0o600},
				{cluster.TLSDir, "directory", 0o700},
				{cluster.NodeKeyPath, "regular", 0o600},
				{cluster.NodeCertPath, "regular", 0o644},
				{cluster.CACertPath, "regular", 0o644},
				{cluster.K3sTokenPath, "regular", 0o600},
				{secrets.SSHHostKeyPath, "regular", 0o600},
				{secrets.K3sTLSDir, "directory", 0o700},
				{secrets.K3sTLSDir + "/etcd", "directory", 0o700},
				{secrets.K3sTLSDir + "/server-ca.key", "regular", 0o600},
				{secrets.K3sTLSDir + "/etcd/peer-ca.key", "regular", 0o600},
				{secrets.K3sTLSDir + "/service.key", "regular", 0o600},
				{"/etc/ssh/authorized_keys/homecloud", "regular", 0o644},
				{"/etc/ssh/sshd_config.d/10-homecloud.conf", "regular", 0o644},
				{"/etc/systemd/system/homecloud-firstboot.service", "regular", 0o644},
				{cluster.DebsDir + "/keepalived_2.2.7-1_arm64.deb", "regular", 0o644},
				{cluster.DebsDir + "/libnl-3-200_3.7.0-0.2_arm64.deb", "regular", 0o644},
				{"/etc/machine-id", "regular", 0o444},
				{stack.ConfigPath, "regular", 0o600},
			} {
				in, ok := stat(t, img.Path, c.path)
				if !ok {
					t.Errorf("%s: missing", c.path)
					continue
				}
				if in.typ != c.typ || in.mode != c.mode || in.uid != 0 || in.gid != 0 {
					t.Errorf("%s: %s %04o %d:%d, want %s %04o 0:0", c.path, in.typ, in.mode, in.uid, in.gid, c.typ, c.mode)
				}
			}
			if got := cat(t, img.Path, "/usr/local/bin/homecloud-firstboot"); got != string(f.firstboot) {
				t.Errorf("homecloud-firstboot holds %q", got)
			}
			if got := cat(t, img.Path, "/etc/ssh/authorized_keys/homecloud"); got != strings.SplitN(string(keys), "\n", 2)[1] {
				t.Errorf("authorized_keys:\n%s\nwant the keys of %s", got, f.keyFile)
			}
			// Every node deploys the stack with the passwords kept in
			// out/cluster: one set, whichever image was written first.
			stackJSON := cat(t, img.Path, stack.ConfigPath)
			if stackSecrets == nil {
				stackSecrets = readStackSecrets(t, res.SecretsDir)
				firstStack = stackJSON
			}
			if stackJSON != firstStack {
				t.Errorf("%s differs from %s's", stack.ConfigPath, res.Images[0].Node)
			}
			for k, v := range stackSecrets {
				if !strings.Contains(stackJSON, v) {
					t.Errorf("%s lacks out/cluster's %s", stack.ConfigPath, k)
				}
			}
			if got := cat(t, img.Path, "/etc/machine-id"); got != "" {
				t.Errorf("/etc/machine-id holds %q: clones would share it", got)
			}
			if got := cat(t, img.Path, "/etc/fixture-config-file-100.conf"); got != "setting=100\n" {
				t.Errorf("a base file changed: %q", got)
			}
			for _, l := range [][2]string{
				{"/etc/systemd/system/multi-user.target.wants/homecloud-firstboot.service", "/etc/systemd/system/homecloud-firstboot.service"},
				{"/etc/systemd/system/multi-user.target.wants/systemd-networkd.service", "/lib/systemd/system/systemd-networkd.service"},
				{"/etc/systemd/system/sockets.target.wants/systemd-networkd.socket", "/lib/systemd/system/systemd-networkd.socket"},
				{"/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service", "/lib/systemd/system/systemd-networkd-wait-online.service"},
				{"/etc/systemd/system/dbus-org.freedesktop.network1.service", "/lib/systemd/system/systemd-networkd.service"},
				{"/etc/systemd/system/armbian-firstrun.service", "/dev/null"},
				// As k3s' installer links them: `sudo kubectl` on a server.
				{"/usr/local/bin/kubectl", "k3s"},
				{"/usr/local/bin/crictl", "k3s"},
				{"/usr/local/bin/ctr", "k3s"},
				// The base's own links are kept.
				{"/etc/systemd/system/multi-user.target.wants/ssh.service", "/lib/systemd/system/ssh.service"},
			} {
				in, ok := stat(t, img.Path, l[0])
				if !ok || in.typ != "symlink" || in.link != l[1] {
					t.Errorf("%s: %+v (exists %v), want a symlink to %s", l[0], in, ok, l[1])
				}
			}
			for _, p := range []string{"/etc/systemd/system/multi-user.target.wants/k3s.service", "/etc/systemd/system/multi-user.target.wants/k3s-agent.service", "/root/.not_logged_in_yet"} {
				if _, ok := stat(t, img.Path, p); ok {
					t.Errorf("%s exists", p)
				}
			}
			getty := cat(t, img.Path, "/etc/systemd/system/serial-getty@.service.d/"+noAutologinDropIn)
			if !strings.Contains(getty, "ExecStart=\nExecStart=-/sbin/agetty -o") || strings.Contains(getty, "autologin root") {
				t.Errorf("getty drop-in does not undo the autologin:\n%s", getty)
			}
			link := cat(t, img.Path, "/etc/systemd/network/10-homecloud.link")
			match := "Driver=" + b.Network.EthDriver
			if b.Network.EthPath != "" {
				match = "Path=" + b.Network.EthPath
			}
			if !strings.Contains(link, "MACAddress="+img.MAC) || !strings.Contains(link, match) {
				t.Errorf("10-homecloud.link:\n%s\nwant MAC %s and %s", link, img.MAC, match)
			}
			n := nodeJSON(t, img.Path)
			if n.Name != img.Node || n.Index != i+1 || n.Expect != nodes || n.Board != board || n.ClusterID != res.ClusterID ||
				n.Network.MAC != img.MAC || len(n.Members) != nodes || n.AdminUser != "homecloud" {
				t.Errorf("node.json: %+v", n)
			}
			if !slices.Equal(n.HoldPackages, b.HoldPackages.Armbian) {
				t.Errorf("hold packages %q, want the Armbian ones %q (the base has /etc/armbian-release)", n.HoldPackages, b.HoldPackages.Armbian)
			}
			// Armbian keeps /var/log in a 50 MB RAM disk: the journal stays
			// at Armbian's 20 MB, under our own drop-in's 64 MB.
			if j := cat(t, img.Path, armbianJournalDropIn); !strings.Contains(j, "SystemMaxUse=20M") {
				t.Errorf("%s: %q, want SystemMaxUse=20M on an Armbian base", armbianJournalDropIn, j)
			}
			configs = append(configs, n)
		})
	}
	distinct := func(what string, get func(cluster.Node) string) {
		seen := map[string]bool{}
		for _, n := range configs {
			if v := get(n); seen[v] {
				t.Errorf("two nodes share %s %q", what, v)
			} else {
				seen[v] = true
			}
		}
	}
	distinct("a name", func(n cluster.Node) string { return n.Name })
	distinct("a MAC", func(n cluster.Node) string { return n.Network.MAC })

	// The CA key never enters an image, in PEM or DER.
	keyPEM, err := os.ReadFile(filepath.Join(res.SecretsDir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		t.Fatal("ca.key holds no PEM block")
	}
	for _, img := range res.Images {
		if fileContains(t, img.Path, bytes.TrimSpace(keyPEM), blk.Bytes) {
			t.Errorf("%s contains the cluster CA key", img.Path)
		}
	}

	cmd := exec.Command("sha256sum", "-c", SumsFile)
	cmd.Dir = res.Out
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c %s: %v\n%s", SumsFile, err, out)
	}
	sums, _ := os.ReadFile(filepath.Join(res.Out, SumsFile))
	for _, img := range res.Images {
		if !strings.Contains(string(sums), img.SHA256+"  "+filepath.Base(img.Path)+"\n") {
			t.Errorf("%s lacks %s %s:\n%s", SumsFile, img.SHA256, filepath.Base(img.Path), sums)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(res.Out, ".*.tmp")); len(leftovers) > 0 {
		t.Errorf("temp files left: %v", leftovers)
	}
	return configs
}

func TestBuildQEMUVirtThreeNodesDHCP(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	armbianize(t, base)
	out := filepath.Join(t.TempDir(), "out")
	res := run(t, f, "--board", "qemu-virt", "--nodes", "3", "--base-image", base, "--out", out,
		"--name", "lab", "--vip", "192.168.50.250/24")
	nodes := checkImages(t, f, res, base, "qemu-virt", 3)
	for _, n := range nodes {
		if n.Cluster != "lab" || n.Network.Mode != "dhcp" || n.Network.Address != "" || n.VIP != "192.168.50.250" {
			t.Errorf("%s: cluster %q network %+v vip %q", n.Name, n.Cluster, n.Network, n.VIP)
		}
	}
	// qemu-virt has no boot loader of its own: the gap stays as it was.
	if got := readAt(t, res.Images[0].Path, testimage.BootloaderOffset, 4096); !bytes.Equal(got, make([]byte, 4096)) {
		t.Error("the boot loader gap of a qemu-virt image was written")
	}
}

func TestBuildPine64FourNodesStaticThenAddFifth(t *testing.T) {
	f := newFixture(t)
	// An Armbian-like base: it brings its own u-boot, which must stay.
	base := testimage.Make(t, testimage.Options{WithBootloader: true})
	armbianize(t, base)
	out := filepath.Join(t.TempDir(), "out")
	static := []string{"--board", "pine64", "--base-image", base, "--out", out, "--network", "10.20.0.0/24",
		"--gateway", "10.20.0.1", "--first-ip", "10.20.0.11", "--vip", "10.20.0.10", "--k3s-images", f.images,
		"--data-disk", "nas", "--data-disk-node", "2"}
	res := run(t, f, append(static, "--nodes", "4")...)
	nodes := checkImages(t, f, res, base, "pine64", 4)
	for i, n := range nodes {
		// Every node tells the raft leader where the disk is plugged in.
		if n.DataDisk != "nas" || n.DataDiskNode != "homecloud-node2" {
			t.Errorf("%s: data disk %q on %q, want nas on homecloud-node2", n.Name, n.DataDisk, n.DataDiskNode)
		}
		want := fmt.Sprintf("10.20.0.%d/24", 11+i)
		if n.Network.Mode != "static" || n.Network.Address != want || n.Network.Gateway != "10.20.0.1" || n.VIP != "10.20.0.10" {
			t.Errorf("%s: network %+v vip %q, want static %s", n.Name, n.Network, n.VIP, want)
		}
		if res.Images[i].Address != want {
			t.Errorf("result address %s, want %s", res.Images[i].Address, want)
		}
		nw := cat(t, res.Images[i].Path, "/etc/systemd/network/10-homecloud.network")
		if !strings.Contains(nw, "Address="+want) || !strings.Contains(nw, "Gateway=10.20.0.1") {
			t.Errorf("%s: 10-homecloud.network:\n%s", n.Name, nw)
		}
	}
	bootloader := testimage.BootloaderBytes()
	for _, img := range res.Images {
		if !bytes.Equal(readAt(t, img.Path, testimage.BootloaderOffset, int64(len(bootloader))), bootloader) {
			t.Errorf("%s: the base's boot loader was changed", img.Node)
		}
		if in, ok := stat(t, img.Path, path.Join(k3sImagesDir, filepath.Base(f.images))); !ok || in.mode != 0o644 {
			t.Errorf("%s: k3s images archive %+v (exists %v)", img.Node, in, ok)
		}
	}

	// A second run with the same --out adds node 5 and keeps the others'
	// identities.
	before := map[string]string{}
	for _, img := range res.Images {
		before[img.Node] = cat(t, img.Path, cluster.NodeCertPath) + cat(t, img.Path, secrets.SSHHostKeyPath)
	}
	caBefore := cat(t, res.Images[0].Path, cluster.CACertPath)
	res2 := run(t, f, append(static, "--nodes", "5")...)
	nodes2 := checkImages(t, f, res2, base, "pine64", 5)
	if res2.ClusterID != res.ClusterID {
		t.Errorf("cluster id changed: %s, then %s", res.ClusterID, res2.ClusterID)
	}
	for i, img := range res2.Images {
		if got := cat(t, img.Path, cluster.CACertPath); got != caBefore {
			t.Errorf("%s: another CA", img.Node)
		}
		if i < 4 && cat(t, img.Path, cluster.NodeCertPath)+cat(t, img.Path, secrets.SSHHostKeyPath) != before[img.Node] {
			t.Errorf("%s: certificate or SSH host key changed on re-run", img.Node)
		}
		if nodes2[i].Expect != 5 {
			t.Errorf("%s: expect %d, want 5", img.Node, nodes2[i].Expect)
		}
	}
	if before[res2.Images[4].Node] != "" || nodes2[4].Network.Address != "10.20.0.15/24" {
		t.Errorf("node 5: %+v", nodes2[4])
	}
}

// A base without a boot loader (made with mkfs, or a GPT-less raw
// download) gets the board's u-boot at its offsets.
func TestBuildPine64WritesUBootIntoBareBase(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	armbianize(t, base)
	// An .img.xz base is decompressed into the cache once.
	baseXZ := compressXZ(t, base)
	ubootDir := t.TempDir()
	spl := bytes.Repeat([]byte("SPL!"), 8192) // 32 KiB, like sunxi-spl.bin
	itb := bytes.Repeat([]byte("FIT."), 50000)
	writeFile(t, filepath.Join(ubootDir, "sunxi-spl.bin"), string(spl))
	writeFile(t, filepath.Join(ubootDir, "u-boot-sunxi-with-spl.fit.itb"), string(itb))

	out := filepath.Join(t.TempDir(), "out")
	res := run(t, f, "--board", "pine64", "--nodes", "1", "--base-image", baseXZ, "--out", out, "--uboot-dir", ubootDir)
	checkImages(t, f, res, base, "pine64", 1)
	img := res.Images[0].Path
	if !bytes.Equal(readAt(t, img, 8192, int64(len(spl))), spl) {
		t.Error("sunxi-spl.bin is not at 8 KiB")
	}
	if !bytes.Equal(readAt(t, img, 40960, int64(len(itb))), itb) {
		t.Error("the u-boot FIT image is not at 40 KiB")
	}
	if cached, _ := filepath.Glob(filepath.Join(f.cache, "base", "*.img")); len(cached) != 1 {
		t.Errorf("decompressed bases in the cache: %v, want one", cached)
	}
}

// cancelAt cancels a build when its progress reaches a line containing at.
type cancelAt struct {
	at     string
	cancel context.CancelFunc
}

func (c cancelAt) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.at) {
		c.cancel()
	}
	return len(p), nil
}

// A build stopped while images are in flight (Ctrl-C) reports why and
// leaves no temp image and no SHA256SUMS listing images that are not there.
func TestBuildCancelledLeavesNoTempFiles(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	armbianize(t, base)
	out := filepath.Join(t.TempDir(), "out")
	for _, at := range []string{"writing image 2 of 4", "writing image 4 of 4"} {
		t.Run(at, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opts := f.opts()
			opts.Progress = cancelAt{at: at, cancel: cancel}
			_, err := Run(ctx, parseSpec(t, f.args("--board", "qemu-virt", "--nodes", "4", "--base-image", base, "--out", out)), opts)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run cancelled at %q: err = %v, want context.Canceled", at, err)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(out, ".*.tmp")); len(leftovers) > 0 {
				t.Errorf("temp files left: %v", leftovers)
			}
			if _, err := os.Stat(filepath.Join(out, SumsFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s written by a cancelled build (stat: %v)", SumsFile, err)
			}
			// All images or none: a finished one is not placed alone.
			if placed, _ := filepath.Glob(filepath.Join(out, "*.img")); len(placed) > 0 {
				t.Errorf("a cancelled build placed %v", placed)
			}
		})
	}
	// A rebuild of a cluster stopped half-way leaves the earlier images
	// and the SHA256SUMS that lists them as they were: sha256sum -c passes.
	t.Run("rebuild", func(t *testing.T) {
		args := f.args("--board", "qemu-virt", "--nodes", "4", "--base-image", base, "--out", out)
		if _, err := Run(context.Background(), parseSpec(t, args), f.opts()); err != nil {
			t.Fatal(err)
		}
		sums, err := os.ReadFile(filepath.Join(out, SumsFile))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		opts := f.opts()
		opts.Progress = cancelAt{at: "writing image 4 of 4", cancel: cancel}
		// Another domain: the new images differ from the old ones.
		if _, err := Run(ctx, parseSpec(t, append(args, "--domain", "rebuilt.example.org")), opts); !errors.Is(err, context.Canceled) {
			t.Fatalf("rebuild: err = %v, want context.Canceled", err)
		}
		cmd := exec.Command("sha256sum", "--check", "--strict", SumsFile)
		cmd.Dir = out
		if b, err := cmd.CombinedOutput(); err != nil || strings.Count(string(b), ": OK") != 4 {
			t.Errorf("after a cancelled rebuild, sha256sum --check: %v\n%s\n%s:\n%s", err, b, SumsFile, sums)
		}
	})
}

// Two builds into one --out would write the same temp images and
// secrets: the second is refused before it writes anything.
func TestBuildRefusesAnOutInUse(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	out := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), parseSpec(t, f.args("--board", "qemu-virt", "--nodes", "1", "--base-image", base, "--out", out)), f.opts())
	var ue *spec.UsageError
	if !errors.As(err, &ue) || ue.Field != "--out" || !strings.Contains(err.Error(), "another homecloud-builder") {
		t.Fatalf("build into a locked --out: %v, want a usage error on --out", err)
	}
	if left, _ := os.ReadDir(out); len(left) > 0 {
		t.Errorf("a refused build left %v in --out", left)
	}
}

func readStackSecrets(t *testing.T, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, stacksecrets.FileName))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) == 0 {
		t.Fatalf("%s holds no secrets", stacksecrets.FileName)
	}
	return m
}

// A build with fewer nodes than the last one into the same --out names
// the earlier images it leaves there, and keeps them out of SHA256SUMS.
func TestFewerNodesWarnsOfEarlierImages(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	out := filepath.Join(t.TempDir(), "out")
	args := f.args("--board", "qemu-virt", "--base-image", base, "--out", out)
	run(t, f, append(args, "--nodes", "2")...)
	var log bytes.Buffer
	opts := f.opts()
	opts.Progress = &log
	if _, err := Run(context.Background(), parseSpec(t, append(args, "--nodes", "1")), opts); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(out, "homecloud-node2.img")
	if !strings.Contains(log.String(), "WARNING: "+stale+" is from an earlier build") {
		t.Errorf("no warning about %s:\n%s", stale, log.String())
	}
	sums, err := os.ReadFile(filepath.Join(out, SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sums), "node2") {
		t.Errorf("%s lists node2:\n%s", SumsFile, sums)
	}
}
