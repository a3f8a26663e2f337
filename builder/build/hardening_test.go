package build

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/builder/ext4fs"
	"github.com/homecloud/homecloud/firstboot/harden"
	"github.com/homecloud/homecloud/internal/netns"
	"github.com/homecloud/homecloud/internal/testimage"
)

// debianDefaults adds what a Debian/Armbian base has that the hardening
// must deal with: Debian's login.defs and nftables (with its flush-all
// ruleset), and host keys every copy of the base shares.
func debianDefaults(t *testing.T, img string) {
	t.Helper()
	fsys, err := ext4fs.Open(context.Background(), img, rootOff)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/etc/ssh", "/usr/lib/systemd/system"} {
		if err := fsys.MkdirAll(d, 0o755, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	for p, c := range map[string]struct {
		data string
		mode fs.FileMode
	}{
		"/etc/login.defs":                          {"MAIL_DIR /var/mail\nUMASK\t\t022\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\nPASS_WARN_AGE\t7\n", 0o644},
		"/etc/nftables.conf":                       {"#!/usr/sbin/nft -f\nflush ruleset\ntable inet filter {\n}\n", 0o755},
		"/usr/lib/systemd/system/nftables.service": {"[Service]\nExecStart=/usr/sbin/nft -f /etc/nftables.conf\nExecStop=/usr/sbin/nft flush ruleset\n[Install]\nWantedBy=sysinit.target\n", 0o644},
		"/etc/ssh/ssh_host_rsa_key":                {"-----BEGIN OPENSSH PRIVATE KEY-----\nshared by every copy\n", 0o600},
		"/etc/ssh/ssh_host_rsa_key.pub":            {"ssh-rsa AAAAB3Nza shared\n", 0o644},
	} {
		if err := fsys.WriteFile(p, strings.NewReader(c.data), c.mode, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := fsys.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestHardeningBaked checks, in built images, every control that needs no
// boot: file contents and modes as debugfs reads them back, the ruleset as
// nft parses it, and the first-boot actions run on the image's own /etc.
func TestHardeningBaked(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	armbianize(t, base)
	debianDefaults(t, base)
	out := filepath.Join(t.TempDir(), "out")
	res := run(t, f, "--board", "qemu-virt", "--nodes", "2", "--base-image", base, "--out", out,
		"--network", "10.20.0.0/24", "--gateway", "10.20.0.1", "--first-ip", "10.20.0.11", "--vip", "10.20.0.10")
	img := res.Images[0].Path

	t.Run("sshd", func(t *testing.T) {
		main := cat(t, img, "/etc/ssh/sshd_config")
		dropIn := cat(t, img, "/etc/ssh/sshd_config.d/10-homecloud.conf")
		if !strings.HasPrefix(firstDirective(main), "Include /etc/ssh/sshd_config.d/") {
			t.Errorf("sshd_config does not include the drop-ins first:\n%s", main)
		}
		// sshd keeps the first value of a keyword; the drop-in is read
		// at the Include, before the rest of the main file.
		eff := sshdEffective(dropIn + "\n" + main)
		for k, want := range map[string]string{
			"permitrootlogin": "no", "passwordauthentication": "no", "kbdinteractiveauthentication": "no",
			"authenticationmethods": "publickey", "allowusers": "homecloud", "usepam": "yes",
			"x11forwarding": "no", "allowtcpforwarding": "no", "allowagentforwarding": "no", "disableforwarding": "yes",
			"permittunnel": "no", "maxauthtries": "3", "logingracetime": "30", "permitemptypasswords": "no",
		} {
			if got := strings.Join(eff[k], " | "); got != want {
				t.Errorf("sshd %s = %q, want %q", k, got, want)
			}
		}
		if hk := eff["hostkey"]; len(hk) != 1 || hk[0] != "/etc/ssh/ssh_host_ed25519_key" {
			t.Errorf("HostKey lines %q, want only the node's ed25519 key", hk)
		}
		for k, bad := range map[string]*regexp.Regexp{
			"kexalgorithms":     regexp.MustCompile(`sha1|nistp|group14|group-exchange`),
			"ciphers":           regexp.MustCompile(`cbc|3des|arcfour`),
			"macs":              regexp.MustCompile(`(^|,)(hmac-sha1|umac-64|hmac-sha2-256,|hmac-sha2-512,)|^[^,]*[^m],|md5`),
			"hostkeyalgorithms": regexp.MustCompile(`rsa|ecdsa|dss`),
		} {
			v := strings.Join(eff[k], ",")
			if v == "" || bad.MatchString(v+",") {
				t.Errorf("sshd %s = %q: empty or weak", k, v)
			}
		}
		for _, m := range strings.Split(strings.Join(eff["macs"], ","), ",") {
			if !strings.HasSuffix(m, "-etm@openssh.com") {
				t.Errorf("MAC %s is not encrypt-then-MAC", m)
			}
		}
	})

	t.Run("sysctl", func(t *testing.T) {
		got := sysctlValues(cat(t, img, "/etc/sysctl.d/90-homecloud.conf"))
		for k, want := range map[string]string{
			// k3s' exceptions to DevSec: forwarding on, bridged traffic through iptables.
			"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1",
			// arm64 with 39-bit VA caps ASLR bits at 24.
			"vm.mmap_rnd_bits":                   "24",
			"net.ipv4.conf.all.accept_redirects": "0", "net.ipv6.conf.all.accept_redirects": "0",
			"net.ipv4.conf.all.send_redirects": "0", "net.ipv4.conf.all.accept_source_route": "0",
			"net.ipv4.tcp_syncookies": "1", "net.ipv4.conf.all.log_martians": "1",
			"net.ipv4.icmp_echo_ignore_broadcasts": "1", "kernel.kptr_restrict": "2", "kernel.dmesg_restrict": "1",
			"kernel.yama.ptrace_scope": "1", "kernel.unprivileged_bpf_disabled": "1", "net.core.bpf_jit_harden": "2",
			"fs.protected_hardlinks": "1", "fs.protected_symlinks": "1", "fs.protected_fifos": "2",
			"fs.protected_regular": "2", "fs.suid_dumpable": "0", "kernel.sysrq": "0", "kernel.randomize_va_space": "2",
		} {
			if got[k] != want {
				t.Errorf("sysctl %s = %q, want %s", k, got[k], want)
			}
		}
		if rp := got["net.ipv4.conf.all.rp_filter"]; rp != "1" && rp != "2" {
			t.Errorf("rp_filter = %q, want source validation on", rp)
		}
	})

	t.Run("sessions and crashes", func(t *testing.T) {
		// An idle admin shell ends after 15 minutes and cannot undo it.
		tm := cat(t, img, "/etc/profile.d/homecloud-tmout.sh")
		if !regexp.MustCompile(`(?m)^TMOUT=([1-9][0-9]{0,2}|900)$`).MatchString(tm) || !regexp.MustCompile(`(?m)^readonly TMOUT$`).MatchString(tm) {
			t.Errorf("no readonly TMOUT ≤ 900 s:\n%s", tm)
		}
		if in, ok := stat(t, img, "/etc/profile.d/homecloud-tmout.sh"); !ok || in.mode&0o777 != 0o644 || in.uid != 0 {
			t.Errorf("profile.d script: %+v, want root's, 0644", in)
		}
		cd := cat(t, img, "/etc/systemd/coredump.conf.d/homecloud.conf")
		for _, w := range []string{"Storage=none", "ProcessSizeMax=0"} {
			if !strings.Contains(cd, w) {
				t.Errorf("systemd-coredump keeps cores: no %q", w)
			}
		}
		if l := cat(t, img, "/etc/security/limits.d/homecloud.conf"); !regexp.MustCompile(`(?m)^\*\s+hard\s+core\s+0$`).MatchString(l) {
			t.Errorf("limits.d allows core dumps:\n%s", l)
		}
		for _, f := range []string{"/etc/issue", "/etc/issue.net"} {
			if b := strings.ToLower(cat(t, img, f)); !strings.Contains(b, "authorised access only") || !strings.Contains(b, "prohibited") {
				t.Errorf("%s has no warning to the unauthorised:\n%s", f, b)
			}
		}
	})

	t.Run("module blacklist", func(t *testing.T) {
		bl := cat(t, img, "/etc/modprobe.d/homecloud-blacklist.conf")
		for _, m := range []string{"cramfs", "freevxfs", "jffs2", "hfs", "hfsplus", "udf", "dccp", "sctp", "rds", "tipc"} {
			if !regexp.MustCompile(`(?m)^install ` + m + ` /bin/(false|true)$`).MatchString(bl) {
				t.Errorf("module %s is not disabled", m)
			}
		}
		for _, m := range []string{"overlay", "br_netfilter", "vxlan", "iscsi_tcp", "nfs", "nfsd", "vfat", "usb-storage", "usb_storage"} {
			if regexp.MustCompile(`(?m)^(install|blacklist) ` + m + `\b`).MatchString(bl) {
				t.Errorf("module %s, which the cluster needs, is disabled", m)
			}
		}
	})

	t.Run("firewall", func(t *testing.T) {
		conf := cat(t, img, harden.NftablesConf)
		for _, w := range []string{"table inet homecloud", "hook input priority filter; policy drop;", "ip saddr @peers4", `include "` + harden.SetsDir + `/*.nft"`} {
			if !strings.Contains(conf, w) {
				t.Errorf("%s lacks %q", harden.NftablesConf, w)
			}
		}
		if regexp.MustCompile(`(?m)^\s*flush ruleset`).MatchString(conf) {
			t.Errorf("%s flushes the whole ruleset: k3s' tables would go too", harden.NftablesConf)
		}
		peers := cat(t, img, harden.PeersFile)
		for _, a := range []string{"10.20.0.11", "10.20.0.12"} {
			if !strings.Contains(peers, "peers4 { "+a+" }") {
				t.Errorf("%s lacks planned peer %s:\n%s", harden.PeersFile, a, peers)
			}
		}
		if lan := cat(t, img, harden.LANFile); !strings.Contains(lan, "lan4 { 10.20.0.11/24 }") {
			t.Errorf("%s lacks the static LAN:\n%s", harden.LANFile, lan)
		}
		// nft itself parses what the image holds, in a throwaway namespace.
		if err := netns.Available(); err != nil {
			t.Skipf("skipping nft -c: %v", err)
		}
		if _, err := exec.LookPath("nft"); err != nil {
			t.Skip("skipping nft -c: nft not found in PATH (package nftables)")
		}
		dir := t.TempDir()
		rdump(t, img, "/etc", dir)
		c := strings.ReplaceAll(conf, `include "`+harden.SetsDir, `include "`+filepath.Join(dir, harden.SetsDir))
		confPath := filepath.Join(dir, "nftables.conf")
		writeFile(t, confPath, c)
		lab, err := netns.New(context.Background(), netip.MustParsePrefix("10.79.4.0/24"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lab.Close() })
		h, err := lab.AddHost(context.Background(), "node")
		if err != nil {
			t.Fatal(err)
		}
		if out, err := h.Run(context.Background(), "nft", "-f", confPath); err != nil {
			t.Fatalf("nft -f the image's ruleset: %v\n%s", err, out)
		}
		listed, err := h.Run(context.Background(), "nft", "list", "set", "inet", "homecloud", "peers4")
		if err != nil || !strings.Contains(listed, "10.20.0.11") || !strings.Contains(listed, "10.20.0.12") {
			t.Errorf("loaded peers4: %v\n%s", err, listed)
		}
	})

	t.Run("units", func(t *testing.T) {
		if w := cat(t, img, "/etc/systemd/system/sysinit.target.d/homecloud-nftables.conf"); !strings.Contains(w, "\nWants=nftables.service\n") {
			t.Errorf("nftables.service is not pulled in at boot:\n%s", w)
		}
		stop := cat(t, img, "/etc/systemd/system/nftables.service.d/homecloud.conf")
		if !strings.Contains(stop, "\nExecStop=\n") || regexp.MustCompile(`(?m)^ExecStop=.*flush ruleset`).MatchString(stop) {
			t.Errorf("nftables.service stop would flush k3s' rules:\n%s", stop)
		}
		if j := sysctlValues(cat(t, img, "/etc/systemd/journald.conf.d/homecloud.conf")); j["SystemMaxUse"] == "" {
			t.Errorf("journald has no size cap")
		}
	})

	t.Run("unattended upgrades", func(t *testing.T) {
		uu := cat(t, img, "/etc/apt/apt.conf.d/52homecloud-unattended")
		for _, w := range []string{"#clear Unattended-Upgrade::Origins-Pattern;", "label=Debian-Security", `Automatic-Reboot "false"`} {
			if !strings.Contains(uu, w) {
				t.Errorf("52homecloud-unattended lacks %q", w)
			}
		}
		if p := cat(t, img, "/etc/apt/apt.conf.d/20auto-upgrades"); !strings.Contains(p, `APT::Periodic::Unattended-Upgrade "1";`) {
			t.Errorf("20auto-upgrades does not turn the upgrades on:\n%s", p)
		}
	})

	t.Run("no secret world-readable", func(t *testing.T) {
		dir := t.TempDir()
		for _, d := range []string{"/etc", "/var/lib/rancher"} {
			rdump(t, img, d, dir)
		}
		secret := regexp.MustCompile(`PRIVATE KEY|^K10|"cluster_id"`)
		checked := 0
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, _ := os.ReadFile(p)
			name := filepath.Base(p)
			if !secret.Match(b) && name != "shadow" && name != "gshadow" {
				return nil
			}
			checked++
			in, ok := stat(t, img, "/"+strings.TrimPrefix(p, dir+"/"))
			if !ok {
				t.Errorf("%s: in the dump, not in the image", p)
			} else if in.mode&0o004 != 0 {
				t.Errorf("%s is world-readable (%04o)", strings.TrimPrefix(p, dir), in.mode)
			}
			return nil
		})
		if checked < 5 {
			t.Errorf("only %d secret files found: the dump is incomplete", checked)
		}
	})

	t.Run("first boot: root locked, login.defs, shared host keys", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("skipping: usermod --root needs root")
		}
		if _, err := exec.LookPath("usermod"); err != nil {
			t.Skip("skipping: usermod not found in PATH (package passwd)")
		}
		root := t.TempDir()
		rdump(t, img, "/etc", root)
		if err := harden.Apply(context.Background(), harden.Options{Root: root, Logger: slog.New(slog.DiscardHandler)}); err != nil {
			t.Fatal(err)
		}
		shadow, _ := os.ReadFile(filepath.Join(root, "etc/shadow"))
		if !strings.HasPrefix(string(shadow), "root:!*:") {
			t.Errorf("root after first boot: %q, want locked with no hash", strings.SplitN(string(shadow), "\n", 2)[0])
		}
		defs, _ := os.ReadFile(filepath.Join(root, "etc/login.defs"))
		for _, w := range []string{"UMASK\t\t027\n", "PASS_MAX_DAYS\t60\n", "PASS_MIN_DAYS\t7\n"} {
			if !strings.Contains(string(defs), w) {
				t.Errorf("login.defs lacks %q:\n%s", w, defs)
			}
		}
		if _, err := os.Stat(filepath.Join(root, "etc/ssh/ssh_host_rsa_key")); !os.IsNotExist(err) {
			t.Errorf("the base's shared RSA host key survives first boot: %v", err)
		}
		if _, err := os.Stat(filepath.Join(root, "etc/ssh/ssh_host_ed25519_key")); err != nil {
			t.Errorf("the node's own host key is gone: %v", err)
		}
	})
}

// rdump copies a directory of the image's root fs to the same path under
// root with debugfs (which keeps modes).
func rdump(t *testing.T, img, src, root string) {
	t.Helper()
	dir := filepath.Join(root, filepath.Dir(src))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out := debugfsR(t, img, fmt.Sprintf("rdump %q %q", src, dir)); strings.Contains(out, "rdump:") {
		t.Fatalf("debugfs rdump %s: %s", src, out)
	}
}

// firstDirective is a config file's first non-comment line.
func firstDirective(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && l[0] != '#' {
			return l
		}
	}
	return ""
}

// sshdEffective applies sshd's rule to a config read in order: the first
// value of a keyword wins, except HostKey, which accumulates. Keys are
// lower case, like sshd -T prints them.
func sshdEffective(conf string) map[string][]string {
	eff := map[string][]string{}
	for _, l := range strings.Split(conf, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		k := strings.ToLower(f[0])
		switch {
		case k == "hostkey":
			eff[k] = append(eff[k], f[1])
		case eff[k] == nil:
			eff[k] = []string{strings.Join(f[1:], " ")}
		}
	}
	return eff
}

// sysctlValues reads "key = value" lines ("-" marks a key whose absence is
// not an error).
func sysctlValues(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		m[strings.TrimPrefix(strings.TrimSpace(k), "-")] = strings.TrimSpace(v)
	}
	return m
}
