package secrets

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/crypto/ssh"
)

// loadOrIssueNode loads a node's files, or makes them when the node is new.
func (s *Secrets) loadOrIssueNode(n NodeSpec, now time.Time) error {
	dir := filepath.Join(s.dir, nodesDir, n.Name)
	if err := recoverAside(dir); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return s.issueNode(dir, n, now, nil)
	} else if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	nd, err := s.loadNode(dir, n, now)
	if err != nil {
		return err
	}
	if !sameIPs(nd.cert, n) {
		// The address changed since the certificate was made: keep the
		// node's SSH identity, re-issue its certificate.
		return s.issueNode(dir, n, now, nd)
	}
	s.nodes[n.Name] = nd.node
	return nil
}

type loadedNode struct {
	*node
	cert *x509.Certificate
}

func (s *Secrets) loadNode(dir string, n NodeSpec, now time.Time) (*loadedNode, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		return b, nil
	}
	nd := &node{spec: n}
	var err error
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{{nodeCert, &nd.certPEM}, {nodeKey, &nd.keyPEM}, {sshKey, &nd.sshKey}, {sshPub, &nd.sshPub}} {
		if *f.dst, err = read(f.name); err != nil {
			return nil, err
		}
	}
	pair, err := tls.X509KeyPair(nd.certPEM, nd.keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node %s: %s and %s: %w", n.Name, nodeCert, nodeKey, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", n.Name, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("node %s: %s is not from this cluster's CA: %w", n.Name, filepath.Join(dir, nodeCert), err)
	}
	if err := cert.VerifyHostname(n.Name); err != nil {
		return nil, fmt.Errorf("node %s: %s is for another node: %w", n.Name, filepath.Join(dir, nodeCert), err)
	}
	priv, err := ssh.ParseRawPrivateKey(nd.sshKey)
	if err != nil {
		return nil, fmt.Errorf("node %s: %s: %w", n.Name, sshKey, err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("node %s: %s: %w", n.Name, sshKey, err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(nd.sshPub)
	if err != nil || string(pub.Marshal()) != string(signer.PublicKey().Marshal()) {
		return nil, fmt.Errorf("node %s: %s does not match %s", n.Name, sshPub, sshKey)
	}
	nd.sshFingerprint = ssh.FingerprintSHA256(pub)
	return &loadedNode{node: nd, cert: cert}, nil
}

// issueNode makes a node's certificate and, unless old gives them, its SSH
// host key, in a temporary directory that then replaces dir.
func (s *Secrets) issueNode(dir string, n NodeSpec, now time.Time, old *loadedNode) error {
	var ips []net.IP
	if n.Addr.IsValid() {
		ips = []net.IP{n.Addr.AsSlice()}
	}
	certPEM, keyPEM, err := s.ca.Issue(n.Name, ips, now)
	if err != nil {
		return err
	}
	nd := &node{spec: n, certPEM: certPEM, keyPEM: keyPEM}
	if old != nil {
		nd.sshKey, nd.sshPub, nd.sshFingerprint = old.sshKey, old.sshPub, old.sshFingerprint
	} else if nd.sshKey, nd.sshPub, nd.sshFingerprint, err = newHostKey(n.Name); err != nil {
		return err
	}
	parent := filepath.Dir(dir)
	tmp, err := os.MkdirTemp(parent, "."+n.Name+".tmp*")
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, dirMode); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{nodeCert, nd.certPEM}, {nodeKey, nd.keyPEM}, {sshKey, nd.sshKey}, {sshPub, nd.sshPub}} {
		if err := writeSecret(filepath.Join(tmp, f.name), f.data); err != nil {
			return err
		}
	}
	if old != nil {
		// Move the old files aside first: a directory cannot be renamed
		// over a non-empty one. The aside name is fixed so that a crash
		// before the next rename is undone by recoverAside: the node keeps
		// its SSH host key.
		if err := os.Rename(dir, asideOf(dir)); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		syncDir(parent)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	syncDir(parent)
	if old != nil {
		if err := os.RemoveAll(asideOf(dir)); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	s.nodes[n.Name] = nd
	return nil
}

// asideOf is where a node's old files wait while new ones take their place.
func asideOf(dir string) string {
	return filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".old")
}

// recoverAside finishes or undoes a re-issue a crash interrupted: with dir
// in place the new files made it and the old ones go; without it the old
// ones come back. Half-written temporary directories go too (the builder
// holds --out's lock, so no other run is writing them).
func recoverAside(dir string) error {
	tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp*"))
	for _, t := range tmps {
		if err := os.RemoveAll(t); err != nil {
			return err
		}
	}
	aside := asideOf(dir)
	if _, err := os.Stat(aside); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		return os.RemoveAll(aside)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(aside, dir); err != nil {
		return err
	}
	syncDir(filepath.Dir(dir))
	return nil
}

// newHostKey makes an SSH host key in OpenSSH's own format, as ssh-keygen
// would write it.
func newHostKey(name string) (priv, pub []byte, fingerprint string, err error) {
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ssh host key for %s: %w", name, err)
	}
	comment := "root@" + name
	blk, err := ssh.MarshalPrivateKey(sk, comment)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ssh host key for %s: %w", name, err)
	}
	sp, err := ssh.NewPublicKey(pk)
	if err != nil {
		return nil, nil, "", fmt.Errorf("ssh host key for %s: %w", name, err)
	}
	line := ssh.MarshalAuthorizedKey(sp) // ends in \n
	pub = append(line[:len(line)-1:len(line)-1], " "+comment+"\n"...)
	return pem.EncodeToMemory(blk), pub, ssh.FingerprintSHA256(sp), nil
}

func sameIPs(c *x509.Certificate, n NodeSpec) bool {
	var want []string
	if n.Addr.IsValid() {
		want = []string{n.Addr.String()}
	}
	var got []string
	for _, ip := range c.IPAddresses {
		got = append(got, ip.String())
	}
	return slices.Equal(got, want)
}
