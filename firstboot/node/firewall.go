package node

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"time"

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

// firewallPeers are the addresses the firewall lets reach raft, etcd,
// kubelet, flannel and VRRP: the builder's static addresses of the other
// nodes, the nodes of our cluster seen over mDNS (a
// newcomer must reach raft to be verified and added) and the raft
// members. An mDNS announcement is not proof of anything; raft's mutual
// TLS still refuses a stranger that lands in this set.
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
	for _, p := range n.others() {
		add(p.RaftAddr)
	}
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
