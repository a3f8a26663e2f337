package harden

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/homecloud/homecloud/internal/cluster"
)

// Files under the root that the ruleset in /etc/nftables.conf includes;
// the builder writes their first version from the cluster spec.
const (
	NftablesConf = "/etc/nftables.conf"
	SetsDir      = "/etc/homecloud/nftables.d"
	PeersFile    = SetsDir + "/peers.nft"
	LANFile      = SetsDir + "/lan.nft"
)

// Firewall keeps the node's nftables sets current: @peers4/@peers6 (the
// other nodes, who alone may reach raft, etcd, kubelet, flannel and VRRP)
// and @lan4/@lan6 (who may reach mDNS, the Kubernetes API and the NAS).
type Firewall struct {
	// Root is where the set files are written; "" or "/" is the node.
	Root string
	// Load makes each written file take effect now with `nft -f`, in the
	// caller's network namespace. The package functions set it only for
	// the running system, so a node service run on a directory in a test
	// never touches the host's firewall.
	Load bool
}

// UpdatePeers replaces the peer sets with addrs on the running node (and
// only writes the file when root is a directory).
func UpdatePeers(ctx context.Context, root string, addrs []netip.Addr) error {
	return Firewall{Root: root, Load: isLive(root)}.UpdatePeers(ctx, addrs)
}

// UpdateLAN replaces the LAN sets with prefixes, like UpdatePeers.
func UpdateLAN(ctx context.Context, root string, prefixes []netip.Prefix) error {
	return Firewall{Root: root, Load: isLive(root)}.UpdateLAN(ctx, prefixes)
}

func isLive(root string) bool { return root == "" || root == "/" }

// UpdatePeers writes PeersFile with addrs and loads it when f.Load. The
// file flushes the sets and refills them in one nft transaction, so the
// firewall never sees a half-written set.
func (f Firewall) UpdatePeers(ctx context.Context, addrs []netip.Addr) error {
	var v4, v6 []string
	for _, a := range addrs {
		a = a.Unmap()
		switch {
		case !a.IsValid() || a.IsUnspecified():
			return fmt.Errorf("firewall peers: %q is not a peer address", a)
		case a.Is4():
			v4 = append(v4, a.String())
		default:
			v6 = append(v6, a.WithZone("").String())
		}
	}
	body := setsFile("The cluster's peers, from discovery and the raft membership.",
		[]set{{"peers4", "ipv4_addr", false, v4}, {"peers6", "ipv6_addr", false, v6}})
	return f.write(ctx, PeersFile, body)
}

// UpdateLAN writes LANFile with prefixes and loads it when f.Load.
func (f Firewall) UpdateLAN(ctx context.Context, prefixes []netip.Prefix) error {
	var v4, v6 []string
	for _, p := range prefixes {
		if !p.IsValid() {
			return fmt.Errorf("firewall LAN: %q is not a prefix", p)
		}
		p = p.Masked()
		if p.Addr().Is4() {
			v4 = append(v4, p.String())
		} else {
			v6 = append(v6, p.String())
		}
	}
	body := setsFile("The node's LAN, from its address.",
		[]set{{"lan4", "ipv4_addr", true, v4}, {"lan6", "ipv6_addr", true, v6}})
	return f.write(ctx, LANFile, body)
}

func (f Firewall) write(ctx context.Context, file string, body []byte) error {
	root := f.Root
	if root == "" {
		root = "/"
	}
	p := filepath.Join(root, file)
	if err := cluster.ReplaceFile(p, body, 0o644); err != nil {
		return err
	}
	if !f.Load {
		return nil
	}
	return LoadRules(ctx, p)
}

// LoadRules runs `nft -f file` in the caller's network namespace.
func LoadRules(ctx context.Context, file string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("load %s: nft not found (install the nftables package): %w", file, err)
	}
	if out, err := exec.CommandContext(ctx, "nft", "-f", file).CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f %s: %w: %s", file, err, bytes.TrimSpace(out))
	}
	return nil
}

type set struct {
	name, typ string
	interval  bool
	elems     []string
}

// setsFile declares the table and the sets (so the file loads on its own,
// before or without the main ruleset), then flushes and refills them.
func setsFile(what string, sets []set) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s\n# Written by homecloud-firstboot; loaded with nft -f, and at boot through %s.\n", what, NftablesConf)
	b.WriteString("table inet homecloud {\n")
	for _, s := range sets {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.name, s.typ)
		if s.interval {
			b.WriteString("\t\tflags interval\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	for _, s := range sets {
		fmt.Fprintf(&b, "flush set inet homecloud %s\n", s.name)
	}
	for _, s := range sets {
		if len(s.elems) == 0 {
			continue
		}
		slices.Sort(s.elems)
		s.elems = slices.Compact(s.elems)
		fmt.Fprintf(&b, "add element inet homecloud %s { %s }\n", s.name, strings.Join(s.elems, ", "))
	}
	return b.Bytes()
}

// InterfacePrefixes returns the global unicast prefixes on a network
// interface: the LAN a node with a DHCP lease sits on, for UpdateLAN.
func InterfacePrefixes(name string) ([]netip.Prefix, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("LAN prefixes: %w", err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("LAN prefixes of %s: %w", name, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.Unmap().IsGlobalUnicast() {
			continue
		}
		bits, _ := ipn.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), bits).Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("LAN prefixes: %s has no global address", name)
	}
	return out, nil
}
