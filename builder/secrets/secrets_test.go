package secrets

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/homecloud/homecloud/internal/cluster"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func staticNodes(n int) []NodeSpec {
	var nodes []NodeSpec
	a := netip.MustParseAddr("192.168.1.11")
	for i := 1; i <= n; i++ {
		nodes = append(nodes, NodeSpec{Name: "homecloud-node" + string(rune('0'+i)), Index: i, Addr: a})
		a = a.Next()
	}
	return nodes
}

func mustLoad(t *testing.T, out string, nodes []NodeSpec, now time.Time) *Secrets {
	t.Helper()
	s, err := LoadOrCreate(out, "homecloud", nodes, now)
	if err != nil {
		t.Fatalf("LoadOrCreate: %v", err)
	}
	return s
}

// snapshot is every file under dir, by relative path.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestFirstRunCreatesEverything(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "out")
	s := mustLoad(t, out, staticNodes(4), t0)
	dir := filepath.Join(out, "cluster")
	if s.Dir() != dir || s.ClusterName() != "homecloud" {
		t.Errorf("Dir %s name %s", s.Dir(), s.ClusterName())
	}

	want := []string{"cluster.json", "ca.crt", "ca.key", "k3s-token",
		"k3s/server-ca.crt", "k3s/server-ca.key", "k3s/client-ca.crt", "k3s/client-ca.key",
		"k3s/request-header-ca.crt", "k3s/request-header-ca.key",
		"k3s/etcd/server-ca.crt", "k3s/etcd/server-ca.key", "k3s/etcd/peer-ca.crt", "k3s/etcd/peer-ca.key",
		"k3s/service.key"}
	for i := 1; i <= 4; i++ {
		for _, f := range []string{"node.crt", "node.key", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"} {
			want = append(want, filepath.Join("nodes", "homecloud-node"+string(rune('0'+i)), f))
		}
	}
	files := snapshot(t, dir)
	for _, f := range want {
		if _, ok := files[f]; !ok {
			t.Errorf("missing %s", f)
		}
	}
	if len(files) != len(want) {
		t.Errorf("%d files, want %d: %v", len(files), len(want), keys(files))
	}

	// Modes: the whole tree is the user's secret.
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		wantMode := fs.FileMode(0o600)
		if d.IsDir() {
			wantMode = 0o700 | fs.ModeDir
		}
		if fi.Mode() != wantMode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), wantMode)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(out, ".*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	ca, err := cluster.LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if s.ClusterID() != cluster.ID(ca.Cert) || !s.CACert().Equal(ca.Cert) {
		t.Errorf("ClusterID %s, want %s", s.ClusterID(), cluster.ID(ca.Cert))
	}
	for i, n := range staticNodes(4) {
		c := verifyNode(t, ca.Cert, files[filepath.Join("nodes", n.Name, "node.crt")], files[filepath.Join("nodes", n.Name, "node.key")])
		if len(c.DNSNames) != 1 || c.DNSNames[0] != n.Name {
			t.Errorf("node %d DNS SANs %v", i+1, c.DNSNames)
		}
		if len(c.IPAddresses) != 1 || c.IPAddresses[0].String() != n.Addr.String() {
			t.Errorf("node %d IP SANs %v, want %s", i+1, c.IPAddresses, n.Addr)
		}
	}

	// The token pins the server CA exactly as k3s hashes it: the file's bytes.
	sum := sha256.Sum256(files["k3s/server-ca.crt"])
	tokenRE := regexp.MustCompile(`^K10` + hex.EncodeToString(sum[:]) + `::server:[0-9a-f]{64}$`)
	if !tokenRE.MatchString(string(files["k3s-token"])) || s.K3sToken() != string(files["k3s-token"]) {
		t.Errorf("k3s token %q does not pin server-ca.crt", files["k3s-token"])
	}
	checkK3sCAs(t, files)
}

func checkK3sCAs(t *testing.T, files map[string][]byte) {
	t.Helper()
	for _, name := range []string{"server-ca", "client-ca", "request-header-ca", "etcd/server-ca", "etcd/peer-ca"} {
		pair, err := tls.X509KeyPair(files["k3s/"+name+".crt"], files["k3s/"+name+".key"])
		if err != nil {
			t.Errorf("k3s %s: %v", name, err)
			continue
		}
		c, _ := x509.ParseCertificate(pair.Certificate[0])
		if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 || c.CheckSignatureFrom(c) != nil {
			t.Errorf("k3s %s is not a self-signed CA", name)
		}
		if c.PublicKeyAlgorithm != x509.ECDSA {
			t.Errorf("k3s %s key is %v, want ECDSA P-256 as k3s makes", name, c.PublicKeyAlgorithm)
		}
	}
	blk, _ := pem.Decode(files["k3s/service.key"])
	if blk == nil || blk.Type != "RSA PRIVATE KEY" {
		t.Fatal("k3s service.key is not a PEM RSA PRIVATE KEY")
	}
	k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil || k.N.BitLen() != 2048 {
		t.Errorf("k3s service.key: %v", err)
	}
}

func verifyNode(t *testing.T, ca *x509.Certificate, certPEM, keyPEM []byte) *x509.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("node key pair: %v", err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("%s does not chain to the cluster CA: %v", c.Subject.CommonName, err)
	}
	return c
}

func TestSecondRunReusesEverything(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	s1 := mustLoad(t, out, staticNodes(4), t0)
	before := snapshot(t, filepath.Join(out, "cluster"))
	s2 := mustLoad(t, out, staticNodes(4), t0.Add(30*24*time.Hour))
	after := snapshot(t, filepath.Join(out, "cluster"))
	if len(before) != len(after) {
		t.Fatalf("%d files before, %d after", len(before), len(after))
	}
	for name, b := range before {
		if !bytes.Equal(b, after[name]) {
			t.Errorf("%s changed on the second run", name)
		}
	}
	if s1.ClusterID() != s2.ClusterID() || s1.K3sToken() != s2.K3sToken() {
		t.Errorf("id or token changed")
	}
	for _, n := range staticNodes(4) {
		b1, _ := s1.Bundle(n.Name)
		b2, _ := s2.Bundle(n.Name)
		if b1.MAC.String() != b2.MAC.String() || b1.SSHHostKeyFingerprint != b2.SSHHostKeyFingerprint {
			t.Errorf("%s: MAC %s→%s, host key %s→%s", n.Name, b1.MAC, b2.MAC, b1.SSHHostKeyFingerprint, b2.SSHHostKeyFingerprint)
		}
	}
}

func TestAddingANodeKeepsTheOthers(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	mustLoad(t, out, staticNodes(4), t0)
	before := snapshot(t, filepath.Join(out, "cluster"))
	s := mustLoad(t, out, staticNodes(5), t0.Add(time.Hour))
	after := snapshot(t, filepath.Join(out, "cluster"))
	for name, b := range before {
		if !bytes.Equal(b, after[name]) {
			t.Errorf("%s changed when node 5 was added", name)
		}
	}
	ca, err := cluster.ReadCert(filepath.Join(out, "cluster", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	n5 := filepath.Join("nodes", "homecloud-node5")
	c := verifyNode(t, ca, after[filepath.Join(n5, "node.crt")], after[filepath.Join(n5, "node.key")])
	if c.IPAddresses[0].String() != "192.168.1.15" {
		t.Errorf("node 5 IP SAN %v", c.IPAddresses)
	}
	b, err := s.Bundle("homecloud-node5")
	if err != nil {
		t.Fatal(err)
	}
	if b.ClusterID != cluster.ID(ca) {
		t.Errorf("node 5 bundle cluster id %s", b.ClusterID)
	}
	// Running with fewer nodes again leaves node 5's files alone.
	mustLoad(t, out, staticNodes(3), t0.Add(2*time.Hour))
	if again := snapshot(t, filepath.Join(out, "cluster")); len(again) != len(after) {
		t.Errorf("files: %d, want %d", len(again), len(after))
	}
}

func TestAddressChangeReissuesOnlyTheCertificate(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	mustLoad(t, out, staticNodes(2), t0)
	before := snapshot(t, filepath.Join(out, "cluster"))
	nodes := staticNodes(2)
	nodes[1].Addr = netip.MustParseAddr("192.168.1.42")
	mustLoad(t, out, nodes, t0)
	after := snapshot(t, filepath.Join(out, "cluster"))
	n2 := filepath.Join("nodes", "homecloud-node2")
	for name, b := range before {
		changed := !bytes.Equal(b, after[name])
		wantChange := name == filepath.Join(n2, "node.crt") || name == filepath.Join(n2, "node.key")
		if changed != wantChange {
			t.Errorf("%s: changed %v, want %v", name, changed, wantChange)
		}
	}
	ca, _ := cluster.ReadCert(filepath.Join(out, "cluster", "ca.crt"))
	c := verifyNode(t, ca, after[filepath.Join(n2, "node.crt")], after[filepath.Join(n2, "node.key")])
	if c.IPAddresses[0].String() != "192.168.1.42" {
		t.Errorf("re-issued SAN %v", c.IPAddresses)
	}
	if left, _ := filepath.Glob(filepath.Join(out, "cluster", "nodes", ".*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// A crash in the middle of a re-issue (the old files moved aside, the new
// ones not yet in place; or in place, the old ones not yet removed) must not
// cost the node its SSH host key: users would meet a changed key.
func TestInterruptedReissueKeepsTheHostKey(t *testing.T) {
	t.Parallel()
	for _, newInPlace := range []bool{false, true} {
		out := t.TempDir()
		mustLoad(t, out, staticNodes(2), t0)
		nodes := filepath.Join(out, "cluster", "nodes")
		n2 := filepath.Join(nodes, "homecloud-node2")
		before := snapshot(t, n2)
		aside := filepath.Join(nodes, ".homecloud-node2.old")
		if err := os.Mkdir(filepath.Join(nodes, ".homecloud-node2.tmp123"), 0o700); err != nil {
			t.Fatal(err)
		}
		if newInPlace {
			if err := os.CopyFS(aside, os.DirFS(n2)); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Rename(n2, aside); err != nil {
			t.Fatal(err)
		}
		moved := staticNodes(2)
		moved[1].Addr = netip.MustParseAddr("192.168.1.42")
		mustLoad(t, out, moved, t0)
		after := snapshot(t, n2)
		for _, f := range []string{"ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"} {
			if !bytes.Equal(before[f], after[f]) {
				t.Errorf("new files in place %v: %s changed", newInPlace, f)
			}
		}
		if bytes.Equal(before["node.crt"], after["node.crt"]) {
			t.Errorf("new files in place %v: the certificate was not re-issued", newInPlace)
		}
		if left, _ := filepath.Glob(filepath.Join(nodes, ".*")); len(left) > 0 {
			t.Errorf("new files in place %v: left behind: %v", newInPlace, left)
		}
	}
}

func TestDHCPNodeHasNoIPSAN(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	s := mustLoad(t, out, []NodeSpec{{Name: "homecloud-node1", Index: 1}}, t0)
	b, err := s.Bundle("homecloud-node1")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range b.Files {
		if f.Path == cluster.NodeCertPath {
			blk, _ := pem.Decode(f.Data)
			c, _ := x509.ParseCertificate(blk.Bytes)
			if len(c.IPAddresses) != 0 || c.DNSNames[0] != "homecloud-node1" {
				t.Errorf("SANs: %v %v", c.DNSNames, c.IPAddresses)
			}
		}
	}
}

func TestNoBundleCarriesTheCAKey(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	s := mustLoad(t, out, staticNodes(4), t0)
	keyPEM, err := os.ReadFile(filepath.Join(out, "cluster", "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(keyPEM)
	// The raw scalar too: a key re-encoded some other way still contains it.
	ca, _ := cluster.LoadCA(filepath.Join(out, "cluster", "ca.crt"), filepath.Join(out, "cluster", "ca.key"))
	scalar, err := ca.Key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range staticNodes(4) {
		b, err := s.Bundle(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range b.Files {
			if bytes.Contains(f.Data, keyPEM) || bytes.Contains(f.Data, blk.Bytes) || bytes.Contains(f.Data, scalar) {
				t.Errorf("%s: %s carries the CA key", n.Name, f.Path)
			}
		}
	}
}

func TestBundleContents(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	s := mustLoad(t, out, staticNodes(2), t0)
	b, err := s.Bundle("homecloud-node2")
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "homecloud-node2" || b.Index != 2 || b.Addr.String() != "192.168.1.12" || b.ClusterID != s.ClusterID() {
		t.Errorf("bundle header %+v", b)
	}
	want := map[string]fs.FileMode{
		"/etc/homecloud/tls/ca.crt":                             0o644,
		"/etc/homecloud/tls/node.crt":                           0o644,
		"/etc/homecloud/tls/node.key":                           0o600,
		"/etc/homecloud/k3s-token":                              0o600,
		"/etc/ssh/ssh_host_ed25519_key":                         0o600,
		"/etc/ssh/ssh_host_ed25519_key.pub":                     0o644,
		"/var/lib/rancher/k3s/server/tls/server-ca.crt":         0o644,
		"/var/lib/rancher/k3s/server/tls/server-ca.key":         0o600,
		"/var/lib/rancher/k3s/server/tls/client-ca.crt":         0o644,
		"/var/lib/rancher/k3s/server/tls/client-ca.key":         0o600,
		"/var/lib/rancher/k3s/server/tls/request-header-ca.crt": 0o644,
		"/var/lib/rancher/k3s/server/tls/request-header-ca.key": 0o600,
		"/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt":    0o644,
		"/var/lib/rancher/k3s/server/tls/etcd/server-ca.key":    0o600,
		"/var/lib/rancher/k3s/server/tls/etcd/peer-ca.crt":      0o644,
		"/var/lib/rancher/k3s/server/tls/etcd/peer-ca.key":      0o600,
		"/var/lib/rancher/k3s/server/tls/service.key":           0o600,
	}
	if len(b.Files) != len(want) {
		t.Errorf("%d files, want %d", len(b.Files), len(want))
	}
	for _, f := range b.Files {
		mode, ok := want[f.Path]
		if !ok {
			t.Errorf("unexpected file %s", f.Path)
		} else if f.Mode != mode {
			t.Errorf("%s: mode %v, want %v", f.Path, f.Mode, mode)
		}
		if len(f.Data) == 0 {
			t.Errorf("%s is empty", f.Path)
		}
	}
	if _, err := s.Bundle("homecloud-node9"); err == nil {
		t.Error("Bundle of an unknown node succeeded")
	}
}

func TestSSHHostKeyAcceptedBySSHKeygen(t *testing.T) {
	t.Parallel()
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client)")
	}
	s := mustLoad(t, t.TempDir(), staticNodes(1), t0)
	b, err := s.Bundle("homecloud-node1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range b.Files {
		if strings.HasPrefix(f.Path, "/etc/ssh/") {
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f.Path)), f.Data, f.Mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	key := filepath.Join(dir, "ssh_host_ed25519_key")
	lout, err := exec.Command(keygen, "-l", "-f", key).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -l rejects the host key: %v\n%s", err, lout)
	}
	if !strings.Contains(string(lout), b.SSHHostKeyFingerprint) || !strings.Contains(string(lout), "(ED25519)") {
		t.Errorf("ssh-keygen -l: %s, want fingerprint %s", lout, b.SSHHostKeyFingerprint)
	}
	// -y derives the public key from the private one: it must match .pub.
	yout, err := exec.Command(keygen, "-y", "-f", key).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -y: %v", err)
	}
	pub, _ := os.ReadFile(key + ".pub")
	if f := strings.Fields(string(yout)); len(f) < 2 || !strings.HasPrefix(string(pub), f[0]+" "+f[1]+" ") {
		t.Errorf("ssh-keygen -y gives %q, .pub holds %q", yout, pub)
	}
}

func TestMAC(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, id := range []string{"0011223344556677", "8899aabbccddeeff"} {
		for i := 1; i <= 32; i++ {
			m := MAC(id, i)
			if len(m) != 6 {
				t.Fatalf("MAC %v has %d bytes", m, len(m))
			}
			if m[0]&0x02 == 0 {
				t.Errorf("%s: locally administered bit clear", m)
			}
			if m[0]&0x01 != 0 {
				t.Errorf("%s: multicast bit set", m)
			}
			if seen[m.String()] {
				t.Errorf("%s given twice", m)
			}
			seen[m.String()] = true
			if MAC(id, i).String() != m.String() {
				t.Errorf("MAC(%s, %d) is not stable", id, i)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	t.Run("other cluster name", func(t *testing.T) {
		out := t.TempDir()
		mustLoad(t, out, staticNodes(1), t0)
		_, err := LoadOrCreate(out, "other", staticNodes(1), t0)
		if err == nil || !strings.Contains(err.Error(), `holds the secrets of cluster "homecloud", not "other": pick another --out`) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("node certificate from another CA", func(t *testing.T) {
		out, other := t.TempDir(), t.TempDir()
		mustLoad(t, out, staticNodes(1), t0)
		mustLoad(t, other, staticNodes(1), t0)
		for _, f := range []string{"node.crt", "node.key"} {
			b, _ := os.ReadFile(filepath.Join(other, "cluster", "nodes", "homecloud-node1", f))
			os.WriteFile(filepath.Join(out, "cluster", "nodes", "homecloud-node1", f), b, 0o600)
		}
		_, err := LoadOrCreate(out, "homecloud", staticNodes(1), t0)
		if err == nil || !strings.Contains(err.Error(), "not from this cluster's CA") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("not a cluster directory", func(t *testing.T) {
		out := t.TempDir()
		os.Mkdir(filepath.Join(out, "cluster"), 0o755)
		_, err := LoadOrCreate(out, "homecloud", staticNodes(1), t0)
		if err == nil || !strings.Contains(err.Error(), "not a homecloud cluster directory") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("duplicate node", func(t *testing.T) {
		nodes := append(staticNodes(2), NodeSpec{Name: "homecloud-node1", Index: 3})
		if _, err := LoadOrCreate(t.TempDir(), "homecloud", nodes, t0); err == nil {
			t.Error("duplicate node accepted")
		}
	})
	t.Run("path in node name", func(t *testing.T) {
		if _, err := LoadOrCreate(t.TempDir(), "homecloud", []NodeSpec{{Name: "../x", Index: 1}}, t0); err == nil {
			t.Error("node name with a path accepted")
		}
	})
}

// The guard in Bundle catches the CA key whatever file it hides in.
func TestBundleGuard(t *testing.T) {
	t.Parallel()
	s := mustLoad(t, t.TempDir(), staticNodes(1), t0)
	keyPEM, _ := s.ca.KeyPEM()
	blk, _ := pem.Decode(keyPEM)
	for _, data := range [][]byte{keyPEM, append([]byte("prefix"), blk.Bytes...)} {
		b := &NodeBundle{Name: "x", Files: []File{{Path: "/etc/motd", Data: data, Mode: 0o644}}}
		if err := s.checkNoCAKey(b); err == nil || !strings.Contains(err.Error(), "/etc/motd would carry the cluster CA key") {
			t.Errorf("checkNoCAKey = %v", err)
		}
	}
}

func keys(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
