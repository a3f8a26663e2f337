package node_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/homecloud/homecloud/firstboot/keepalived"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/internal/clustertest"
)

// A server that comes back at another address (a new DHCP lease, a moved
// reservation) keeps its name and raft state; the leader moves its raft
// member to the new address. The plan does not change, but the other
// servers' keepalived must follow the move: with adverts still sent to
// the old address the moved node hears none, makes itself master, and
// ignores the real master's adverts (check_unicast_src): two VIP holders.
func TestMovedServerKeepalived(t *testing.T) {
	c := newCluster(t, 3, true)
	serving(t, c, 90*time.Second)
	waitOneVIP(t, c, 30*time.Second, "")

	n3 := c.Nodes[2]
	old := n3.Host.Addr
	moved := offset(old, 40)
	bits := c.Opts.Subnet.Bits()
	for _, nd := range c.Nodes {
		if nd.Host.Addr == moved || c.VIP == moved {
			t.Fatalf("new address %s is taken", moved)
		}
	}
	n3.Kill()
	ctx := context.Background()
	// A board that gets a new lease was away longer than raft's election
	// timeout: the others lead without it by then (and a leader does not
	// move its own raft address, another member's leader does).
	lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
	defer lcancel()
	if err := clustertest.WaitFor(lctx, 200*time.Millisecond, func() (bool, string) {
		views := serving(t, c, 30*time.Second)
		for name, v := range views {
			if v.Leader == n3.Name {
				return false, fmt.Sprintf("%s still follows %s", name, v.Leader)
			}
		}
		return true, ""
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := n3.Host.Run(ctx, "ip", "addr", "del", netip.PrefixFrom(old, bits).String(), "dev", "eth0"); err != nil {
		t.Fatal(out, err)
	}
	if out, err := n3.Host.Run(ctx, "ip", "addr", "add", netip.PrefixFrom(moved, bits).String(), "dev", "eth0"); err != nil {
		t.Fatal(out, err)
	}
	// node3's own node.json: its static address, and its entry in the
	// builder's member list (the firewall's planned peers). The leader
	// accepts the move from node3's announcement, proved by a TLS
	// handshake, and not from node.json.
	p := filepath.Join(n3.Root, cluster.NodeConfigPath)
	cfg, err := cluster.LoadNode(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Network.Address = netip.PrefixFrom(moved, bits).String()
	for i := range cfg.Members {
		if cfg.Members[i].Name == n3.Name {
			cfg.Members[i].Address = moved.String()
		}
	}
	b, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.WriteFileAtomic(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	n3.Host.Addr = moved
	if err := n3.Start(ctx); err != nil {
		t.Fatal(err)
	}
	views := serving(t, c, 90*time.Second)
	// Real k3s would not come back here (its etcd knows node3 by its old
	// address); the fake does, but the node tells the user either way.
	if w := views[n3.Name].Warning; !strings.Contains(w, old.String()) || !strings.Contains(w, "11778") {
		t.Errorf("%s's status warning %q: want one naming its old address %s and why", n3.Name, w, old)
	}
	for _, name := range []string{c.Nodes[0].Name, c.Nodes[1].Name} {
		if w := views[name].Warning; w != "" {
			t.Errorf("%s did not move but warns %q", name, w)
		}
	}
	// Power-cycled again at the new address: k3s' config has the new one
	// by now, etcd still the old; the warning stays.
	n3.Kill()
	if err := n3.Start(ctx); err != nil {
		t.Fatal(err)
	}
	views = serving(t, c, 90*time.Second)
	if w := views[n3.Name].Warning; !strings.Contains(w, old.String()) {
		t.Errorf("after another restart, %s's status warning %q: want one naming its old address %s", n3.Name, w, old)
	}
	for _, m := range views[c.Nodes[0].Name].Members {
		t.Logf("%s sees raft member %s at %s", c.Nodes[0].Name, m.ID, m.Addr)
	}

	// The others' unicast peers follow node3 to its new address.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = clustertest.WaitFor(wctx, 200*time.Millisecond, func() (bool, string) {
		for _, nd := range c.Nodes[:2] {
			peers, err := unicastPeers(filepath.Join(nd.Root, keepalived.ConfigPath))
			if err != nil {
				return false, err.Error()
			}
			if !slices.Contains(peers, moved.String()) || slices.Contains(peers, old.String()) {
				return false, fmt.Sprintf("%s keepalived unicast peers %v: want node3's new address %s, not its old %s", nd.Name, peers, moved, old)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Error(err)
	}

	// One VIP holder, and it stays one (two masters that ignore each
	// other do not resolve by themselves).
	holder := waitOneVIP(t, c, 30*time.Second, "")
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if h := vipHolders(c); len(h) != 1 {
			t.Fatalf("VIP holders %v after node3 moved to %s (held by %s before)", h, moved, holder)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// offset is a + d within its /24 (the lab's subnets).
func offset(a netip.Addr, d byte) netip.Addr {
	b := a.As4()
	b[3] += d
	return netip.AddrFrom4(b)
}

// unicastPeers reads the addresses in keepalived.conf's unicast_peer block.
func unicastPeers(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	_, rest, ok := strings.Cut(string(b), "unicast_peer {")
	if !ok {
		return nil, fmt.Errorf("%s: no unicast_peer block", path)
	}
	block, _, ok := strings.Cut(rest, "}")
	if !ok {
		return nil, fmt.Errorf("%s: unterminated unicast_peer block", path)
	}
	return strings.Fields(block), nil
}
