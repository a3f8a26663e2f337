package node

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/homecloud/homecloud/firstboot/discovery"
	"github.com/homecloud/homecloud/firstboot/keepalived"
	"github.com/homecloud/homecloud/firstboot/plan"
	"github.com/homecloud/homecloud/firstboot/status"
	"github.com/homecloud/homecloud/internal/cluster"
)

// vip: servers run keepalived so the cluster answers on one address; agents
// do not (the VIP points at the API, which only servers serve).
func (n *Node) vip(ctx context.Context) error {
	p, _ := n.raft.Plan()
	return n.applyVIP(ctx, p)
}

func (n *Node) applyVIP(ctx context.Context, p plan.Plan) error {
	if n.cfg.VIP == "" {
		return nil
	}
	if p.Role(n.cfg.Name) != "server" {
		if on, _ := n.opts.Services.Active(ctx, keepalived.Unit); on {
			return n.opts.Services.Stop(ctx, keepalived.Unit)
		}
		return nil
	}
	addrs, err := n.addrOf()
	if err != nil {
		return err
	}
	vip := netip.MustParseAddr(n.cfg.VIP)
	bits, err := prefixLen(n.iface, n.addr)
	if err != nil {
		return err
	}
	kp := keepalived.Params{
		Self:       keepalived.Node{Name: n.cfg.Name, Addr: n.addr},
		Priorities: p.Priorities,
		ClusterID:  n.cfg.ClusterID,
		Iface:      n.iface,
		VIP:        netip.PrefixFrom(vip, bits),
		Check:      n.opts.CheckArgv,
	}
	kp.Members = vipMembers(p, addrs)
	conf, err := keepalived.RenderConfig(kp)
	if err != nil {
		return err
	}
	path := n.opts.path(keepalived.ConfigPath)
	old, _ := os.ReadFile(path)
	changed := !bytes.Equal(old, conf)
	if changed {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := cluster.WriteFileAtomic(path, conf, 0o644); err != nil {
			return err
		}
	}
	on, err := n.opts.Services.Active(ctx, keepalived.Unit)
	if err != nil {
		return err
	}
	if on && changed {
		if err := n.opts.Services.Stop(ctx, keepalived.Unit); err != nil {
			return fmt.Errorf("restart keepalived: %w", err)
		}
		on = false
	}
	if !on {
		if err := n.opts.Services.Start(ctx, keepalived.Unit); err != nil {
			return fmt.Errorf("start keepalived: %w", err)
		}
		n.log.Info("keepalived started", "vip", kp.VIP, "peers", len(kp.Members)-1)
	}
	return nil
}

// vipMembers are keepalived's members (its unicast peers and itself): the
// plan's servers at their addresses in the raft membership. The plan
// holds no addresses, so a server that moved changes these and not the
// plan.
func vipMembers(p plan.Plan, addrs map[string]netip.Addr) []keepalived.Node {
	var out []keepalived.Node
	for _, s := range p.Servers {
		if a, ok := addrs[s]; ok {
			out = append(out, keepalived.Node{Name: s, Addr: a})
		}
	}
	return out
}

func prefixLen(iface string, addr netip.Addr) (int, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return 0, err
	}
	as, err := ifi.Addrs()
	if err != nil {
		return 0, err
	}
	for _, a := range as {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == addr {
				ones, _ := ipn.Mask.Size()
				return ones, nil
			}
		}
	}
	return 0, fmt.Errorf("%s not on %s", addr, iface)
}

func (n *Node) holdsVIP() bool {
	if n.cfg.VIP == "" || n.iface == "" {
		return false
	}
	ok, _ := keepalived.HoldsVIP(n.iface, netip.MustParseAddr(n.cfg.VIP))
	return ok
}

// watchVIP keeps the view's VIP holder current by asking the servers'
// status endpoints in the background, so a status request never fans out.
func (n *Node) watchVIP(ctx context.Context) {
	if n.cfg.VIP == "" {
		return
	}
	every(ctx, time.Second, func() {
		holder := ""
		if n.holdsVIP() {
			holder = n.cfg.Name
		} else {
			for _, p := range n.others() {
				if p.StatusAddr == "" || !n.trusted(p) {
					continue
				}
				fctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				v, err := status.Fetch(fctx, "http://"+p.StatusAddr+"/status")
				cancel()
				if err == nil && v.HoldsVIP {
					holder = v.Node
					break
				}
			}
		}
		n.board.Update(func(v *status.View) { v.VIPHolder = holder })
	})
}

// trusted reports whether an announcement is a node of the cluster: a raft
// member, or a peer a handshake proved, announced from the address it was
// proved at, and offering its status there too. Anyone can announce
// anything over mDNS.
func (n *Node) trusted(p discovery.Peer) bool {
	host := func(hostport string) string {
		h, _, _ := net.SplitHostPort(hostport)
		return h
	}
	if h := host(p.RaftAddr); h == "" || host(p.StatusAddr) != h {
		return false
	}
	n.mu.Lock()
	proved := n.verified[p.Name] == claimOf(p)
	n.mu.Unlock()
	if proved {
		return true
	}
	if n.raft == nil {
		return false
	}
	ms, err := n.raft.Members()
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.ID == p.Name && m.Addr == p.RaftAddr {
			return true
		}
	}
	return false
}
