// Package secrets makes a cluster's secrets once, keeps them in
// <out>/cluster/, and hands out per-node bundles for the image writer.
//
// Layout of <out>/cluster/ (directories 0700, files 0600):
//
//	cluster.json                 name and id: which cluster this is
//	ca.crt, ca.key               the cluster CA; ca.key never enters an image
//	k3s-token                    K10<sha256 of k3s/server-ca.crt>::server:<secret>
//	k3s/...                      k3s' server CAs and service-account key
//	nodes/<name>/node.crt, node.key, ssh_host_ed25519_key{,.pub}
//
// A later run with the same --out reuses everything: nodes keep their keys
// and certificates, and new nodes are issued from the same CA.
package secrets

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/homecloud/homecloud/internal/cluster"
)

// DirName is the folder under --out that holds the secrets.
const DirName = "cluster"

// File names inside DirName.
const (
	infoFile  = "cluster.json"
	caCert    = "ca.crt"
	caKey     = "ca.key"
	tokenFile = "k3s-token"
	k3sDir    = "k3s"
	nodesDir  = "nodes"

	nodeCert   = "node.crt"
	nodeKey    = "node.key"
	sshKey     = "ssh_host_ed25519_key"
	sshPub     = "ssh_host_ed25519_key.pub"
	secretMode = 0o600
	dirMode    = 0o700
)

// NodeSpec is one node as the builder plans it.
type NodeSpec struct {
	Name  string
	Index int // 1-based
	// Addr is the node's static address; invalid (zero) with DHCP.
	Addr netip.Addr
}

// Secrets is a cluster's secrets, loaded or made by LoadOrCreate.
type Secrets struct {
	dir   string
	name  string
	id    string
	ca    *cluster.CA // unexported: the CA key leaves this package only into ca.key
	caPEM []byte
	token string
	k3s   []k3sFile
	nodes map[string]*node
}

type node struct {
	spec            NodeSpec
	certPEM, keyPEM []byte
	sshKey, sshPub  []byte
	sshFingerprint  string
}

// info is cluster.json.
type info struct {
	Name string `json:"name"`
	ID   string `json:"id"`
}

// LoadOrCreate returns the secrets in <outDir>/cluster, making what is
// missing: the whole set on the first run, and on later runs the files of
// nodes not seen before. Existing node keys and certificates are kept; a
// certificate is re-issued (with a new key) only when the node's address
// changed, since its SAN would be wrong. It refuses a directory made for a
// cluster of another name.
func LoadOrCreate(outDir, clusterName string, nodes []NodeSpec, now time.Time) (*Secrets, error) {
	if err := checkNodes(nodes); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("make output directory: %w", err)
	}
	dir := filepath.Join(outDir, DirName)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := create(dir, clusterName, now); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("cluster secrets: %w", err)
	}
	s, err := load(dir, clusterName)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if err := s.loadOrIssueNode(n, now); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func checkNodes(nodes []NodeSpec) error {
	names := map[string]bool{}
	indexes := map[int]bool{}
	for _, n := range nodes {
		if n.Name == "" || n.Name != filepath.Base(n.Name) || n.Name[0] == '.' {
			return fmt.Errorf("node name %q: want a plain host name", n.Name)
		}
		if n.Index < 1 {
			return fmt.Errorf("node %s: index %d, want ≥ 1", n.Name, n.Index)
		}
		if names[n.Name] || indexes[n.Index] {
			return fmt.Errorf("node %s (index %d) is listed twice", n.Name, n.Index)
		}
		names[n.Name], indexes[n.Index] = true, true
	}
	return nil
}

// ExistingCluster returns the name of the cluster whose secrets are in
// <outDir>/cluster, if there are any, so a build can refuse to mix two
// clusters before it writes anything.
func ExistingCluster(outDir string) (name string, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(outDir, DirName, infoFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(outDir, DirName)); serr == nil {
			return "", false, notClusterDir(filepath.Join(outDir, DirName))
		}
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read cluster info: %w", err)
	}
	var in info
	if err := json.Unmarshal(b, &in); err != nil {
		return "", false, fmt.Errorf("cluster info %s: %w", filepath.Join(outDir, DirName, infoFile), err)
	}
	return in.Name, true, nil
}

// ErrNotClusterDir is returned (wrapped) when --out has a cluster
// directory that homecloud did not make: it is not ours to write into.
var ErrNotClusterDir = errors.New("is not a homecloud cluster directory")

func notClusterDir(dir string) error {
	return fmt.Errorf("%s exists but %w (no %s): pick another --out", dir, ErrNotClusterDir, infoFile)
}

// load reads a cluster directory made by create and checks it belongs to
// the named cluster.
func load(dir, clusterName string) (*Secrets, error) {
	b, err := os.ReadFile(filepath.Join(dir, infoFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, notClusterDir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read cluster info: %w", err)
	}
	var in info
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("cluster info %s: %w", filepath.Join(dir, infoFile), err)
	}
	if in.Name != clusterName {
		return nil, fmt.Errorf("%s holds the secrets of cluster %q, not %q: pick another --out for a new cluster, or --name %s to add nodes to that one",
			dir, in.Name, clusterName, in.Name)
	}
	ca, err := cluster.LoadCA(filepath.Join(dir, caCert), filepath.Join(dir, caKey))
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if id := cluster.ID(ca.Cert); id != in.ID {
		return nil, fmt.Errorf("%s: CA id %s differs from %s in %s: the directory was tampered with", dir, id, in.ID, infoFile)
	}
	s := &Secrets{dir: dir, name: in.Name, id: in.ID, ca: ca, caPEM: ca.CertPEM(), nodes: map[string]*node{}}
	if s.k3s, err = loadK3s(filepath.Join(dir, k3sDir)); err != nil {
		return nil, err
	}
	tok, err := os.ReadFile(filepath.Join(dir, tokenFile))
	if err != nil {
		return nil, fmt.Errorf("read k3s token: %w", err)
	}
	s.token = string(tok)
	if err := checkToken(s.token, s.k3sServerCA()); err != nil {
		return nil, fmt.Errorf("k3s token %s: %w", filepath.Join(dir, tokenFile), err)
	}
	return s, nil
}

// Dir is <out>/cluster.
func (s *Secrets) Dir() string { return s.dir }

// ClusterName is the cluster's human name.
func (s *Secrets) ClusterName() string { return s.name }

// ClusterID is the hash of the CA certificate nodes announce over mDNS.
func (s *Secrets) ClusterID() string { return s.id }

// CACert is the cluster CA's certificate (never its key).
func (s *Secrets) CACert() *x509.Certificate { return s.ca.Cert }

// K3sToken is k3s' secure join token.
func (s *Secrets) K3sToken() string { return s.token }

// MAC is the stable, locally administered unicast address of the node with
// the given index: cloned A64 images otherwise share one. It is derived,
// not stored, so every run gives the same answer for the same cluster.
func MAC(clusterID string, index int) net.HardwareAddr {
	sum := sha256.Sum256(fmt.Appendf(nil, "homecloud mac\x00%s\x00%d", clusterID, index))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	return mac
}
