package node

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/homecloud/homecloud/firstboot/discovery"
	"github.com/homecloud/homecloud/firstboot/harden"
)

// lanPrefixes is the LAN the node sits on: the static subnet from
// node.json, or what the DHCP lease put on the interface.
func (n *Node) lanPrefixes() ([]netip.Prefix, error) {
	if n.cfg.Network.Mode == "static" {
		return []netip.Prefix{netip.MustParsePrefix(n.cfg.Network.Address).Masked()}, nil // validated by LoadNode
	}
	return harden.InterfacePrefixes(n.iface)
}

// provedPeer is what a TLS handshake against the cluster CA proved of
// an announced peer.
type provedPeer struct{ fingerprint, raftAddr string }

// claimOf is what an announcement claims, to compare with what was proved.
func claimOf(p discovery.Peer) provedPeer {
	return provedPeer{fingerprint: p.Fingerprint, raftAddr: p.RaftAddr}
}

// firewallPeers are the addresses the firewall lets reach etcd, kubelet,
// flannel, VRRP and the status endpoint: the builder's static addresses
// of the other nodes, the raft members, and announced peers only once a
// TLS handshake proved they hold the cluster's certificate for that
// name. An mDNS announcement proves nothing, and flannel's VXLAN and
// VRRP have no authentication of their own. Raft's port is open to the
// whole LAN instead (nftables.conf): its mutual TLS is the check, and a
// newcomer on DHCP must reach it to be proved at all.
func (n *Node) firewallPeers() []netip.Addr {
	var out []netip.Addr
	add := func(hostport string) {
		host, _, err := net.SplitHostPort(hostport)
		if err != nil {
			return
		}
		if a, err := netip.ParseAddr(host); err == nil && a != n.addr {
			out = append(out, a.Unmap())
		}
	}
	// The builder's planned addresses (static network) stay: a node that
	// has not announced itself yet must still reach us.
	for _, m := range n.cfg.Members {
		if m.Name != n.cfg.Name && m.Address != "" {
			add(net.JoinHostPort(m.Address, "0"))
		}
	}
	n.mu.Lock()
	for _, p := range n.verified {
		add(p.raftAddr)
	}
	n.mu.Unlock()
	if n.raft != nil {
		if ms, err := n.raft.Members(); err == nil {
			for _, m := range ms {
				add(m.Addr)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

// keepFirewall rewrites the firewall's peer set whenever discovery or the
// membership changes it, for the life of the node.
func (n *Node) keepFirewall(ctx context.Context) {
	var last []netip.Addr
	written := false
	for {
		if addrs := n.firewallPeers(); !written || !slices.Equal(addrs, last) {
			if err := harden.UpdatePeers(ctx, n.opts.Root, addrs); err != nil {
				n.log.Error("firewall peers", "err", err)
			} else {
				n.log.Info("firewall peers", "addrs", addrs)
				last, written = addrs, true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-n.watcher.Changed():
		case <-time.After(2 * time.Second):
		}
	}
}
