package secrets

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"path"
	"sort"

	"github.com/homecloud/homecloud/internal/cluster"
)

// Paths of the SSH host key inside an image.
const (
	SSHHostKeyPath    = "/etc/ssh/ssh_host_ed25519_key"
	SSHHostKeyPubPath = SSHHostKeyPath + ".pub"
)

// File is one file for the image writer: where it goes in the root fs,
// what it holds and its mode (owner root).
type File struct {
	Path string
	Data []byte
	Mode fs.FileMode
}

// NodeBundle is everything secret or node-specific that goes into one
// node's image. It has no field for the cluster CA's key on purpose: the
// key has no way into an image.
type NodeBundle struct {
	Name  string
	Index int
	Addr  netip.Addr // static address; invalid with DHCP
	// MAC is the node's stable locally administered address, for node.json.
	MAC       net.HardwareAddr
	ClusterID string
	// SSHHostKeyFingerprint ("SHA256:...") lets the user check the node's
	// key on the first ssh login.
	SSHHostKeyFingerprint string
	// Files are sorted by Path.
	Files []File
}

// Bundle returns the files for one node named to LoadOrCreate.
//
// Every node gets k3s' server CA keys, not only the planned servers: roles
// are agreed at first boot, and when a server dies any node may be
// promoted in its place. This gives an agent nothing new: its server token
// already lets it join as a server, which hands it those keys anyway.
func (s *Secrets) Bundle(nodeName string) (*NodeBundle, error) {
	n, ok := s.nodes[nodeName]
	if !ok {
		return nil, fmt.Errorf("no secrets for node %q: it was not passed to LoadOrCreate", nodeName)
	}
	b := &NodeBundle{
		Name:                  n.spec.Name,
		Index:                 n.spec.Index,
		Addr:                  n.spec.Addr,
		MAC:                   MAC(s.id, n.spec.Index),
		ClusterID:             s.id,
		SSHHostKeyFingerprint: n.sshFingerprint,
		Files: []File{
			{cluster.CACertPath, s.caPEM, 0o644},
			{cluster.NodeCertPath, n.certPEM, 0o644},
			{cluster.NodeKeyPath, n.keyPEM, secretMode},
			{cluster.K3sTokenPath, []byte(s.token), secretMode},
			{SSHHostKeyPath, n.sshKey, secretMode},
			{SSHHostKeyPubPath, n.sshPub, 0o644},
		},
	}
	for _, f := range s.k3s {
		mode := fs.FileMode(0o644)
		if f.secret {
			mode = secretMode
		}
		b.Files = append(b.Files, File{path.Join(K3sTLSDir, f.rel), f.data, mode})
	}
	sort.Slice(b.Files, func(i, j int) bool { return b.Files[i].Path < b.Files[j].Path })
	if err := s.checkNoCAKey(b); err != nil {
		return nil, err
	}
	return b, nil
}

// checkNoCAKey is the last line of defence: whatever a future change adds
// to a bundle, the CA key must not be in it, in PEM or DER.
func (s *Secrets) checkNoCAKey(b *NodeBundle) error {
	keyPEM, err := s.ca.KeyPEM()
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(keyPEM)
	for _, f := range b.Files {
		if bytes.Contains(f.Data, keyPEM) || bytes.Contains(f.Data, blk.Bytes) {
			return fmt.Errorf("node %s: %s would carry the cluster CA key: refusing", b.Name, f.Path)
		}
	}
	return nil
}
