// Package cluster holds what the builder and the node service share: the
// node configuration schema written into every image and the cluster's PKI.
// Neither side imports the other; both import this.
package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// Paths inside a node's root file system. The node service prefixes them
// with its --root so one machine can run several nodes.
const (
	NodeConfigPath = "/etc/homecloud/node.json"
	TLSDir         = "/etc/homecloud/tls"
	CACertPath     = TLSDir + "/ca.crt"
	NodeCertPath   = TLSDir + "/node.crt"
	NodeKeyPath    = TLSDir + "/node.key"
	K3sTokenPath   = "/etc/homecloud/k3s-token"
	StateDir       = "/var/lib/homecloud"
	DebsDir        = "/var/lib/homecloud/debs"
)

// Default ports; all are configurable on the node service's command line.
const (
	DefaultRaftPort   = 7373
	DefaultStatusPort = 7380
)

// Network describes how a node gets its address.
type Network struct {
	// Mode is "dhcp" or "static".
	Mode string `json:"mode"`
	// Address is the node's address with prefix length (static mode).
	Address string   `json:"address,omitempty"`
	Gateway string   `json:"gateway,omitempty"`
	DNS     []string `json:"dns,omitempty"`
	// MAC is the stable, locally administered address the builder made for
	// this node: cloned A64 images otherwise share one.
	MAC string `json:"mac,omitempty"`
	// Interface is the LAN interface name; empty means the first Ethernet one.
	Interface string `json:"interface,omitempty"`
}

// Member is one node as the builder planned it.
type Member struct {
	Name    string `json:"name"`
	Index   int    `json:"index"`
	Address string `json:"address,omitempty"` // static mode only, without prefix
}

// Node is /etc/homecloud/node.json: everything a node needs to know to join
// its cluster, and nothing secret (the key and token live in 0600 files beside it).
type Node struct {
	Cluster   string  `json:"cluster"`    // human name, e.g. "homecloud"
	ClusterID string  `json:"cluster_id"` // hash of the CA certificate: not a secret
	Name      string  `json:"name"`       // e.g. "homecloud-node1"
	Index     int     `json:"index"`      // 1-based
	Expect    int     `json:"expect"`     // nodes the builder made; bootstrap waits for them
	Board     string  `json:"board"`
	Network   Network `json:"network"`
	VIP       string  `json:"vip,omitempty"`
	Domain    string  `json:"domain,omitempty"`
	ACMEEmail string  `json:"acme_email,omitempty"`
	// DataDisk is the file system label of the NAS data disk, if any.
	DataDisk string `json:"data_disk,omitempty"`
	// DataDiskNode is the node the data disk is plugged into.
	DataDiskNode string `json:"data_disk_node,omitempty"`
	// HoldPackages are the board's kernel/boot packages to apt-mark hold.
	HoldPackages []string        `json:"hold_packages,omitempty"`
	Members      []Member        `json:"members,omitempty"`
	Services     map[string]bool `json:"services,omitempty"`
	// AdminUser is the account made for the family's admin, with their keys.
	AdminUser string `json:"admin_user,omitempty"`
}

// Validate reports the first thing wrong with n, naming the field.
func (n *Node) Validate() error {
	var errs []error
	if n.Cluster == "" {
		errs = append(errs, errors.New("cluster: empty"))
	}
	if n.ClusterID == "" {
		errs = append(errs, errors.New("cluster_id: empty"))
	}
	if n.Name == "" {
		errs = append(errs, errors.New("name: empty"))
	}
	if n.Index < 1 {
		errs = append(errs, fmt.Errorf("index: %d, want ≥ 1", n.Index))
	}
	if n.Expect < 1 || n.Index > n.Expect {
		errs = append(errs, fmt.Errorf("expect: %d, want ≥ 1 and ≥ index %d", n.Expect, n.Index))
	}
	switch n.Network.Mode {
	case "dhcp":
	case "static":
		if _, err := netip.ParsePrefix(n.Network.Address); err != nil {
			errs = append(errs, fmt.Errorf("network.address: %w", err))
		}
	default:
		errs = append(errs, fmt.Errorf("network.mode: %q, want dhcp or static", n.Network.Mode))
	}
	if n.VIP != "" {
		if _, err := netip.ParseAddr(n.VIP); err != nil {
			errs = append(errs, fmt.Errorf("vip: %w", err))
		}
	}
	return errors.Join(errs...)
}

// LoadNode reads and validates a node.json.
func LoadNode(path string) (*Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read node config: %w", err)
	}
	var n Node
	if err := json.Unmarshal(b, &n); err != nil {
		return nil, fmt.Errorf("parse node config %s: %w", path, err)
	}
	if err := n.Validate(); err != nil {
		return nil, fmt.Errorf("node config %s: %w", path, err)
	}
	return &n, nil
}

// Marshal renders n as the indented JSON the builder writes.
func (n *Node) Marshal() ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ReplaceFile is WriteFileAtomic for a system file the node edits: an
// existing file keeps its mode (mode is for a new one), and a missing
// parent directory is made.
func ReplaceFile(path string, data []byte, mode os.FileMode) error {
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return WriteFileAtomic(path, data, mode)
}

// WriteFileAtomic writes data to path through a temp file in the same
// directory, fsynced and renamed, so a crash never leaves half a file.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
