package keepalived

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/homecloud/homecloud/firstboot/svc"
	"github.com/homecloud/homecloud/internal/netns"
)

var labVIP = netip.MustParsePrefix("10.78.0.200/24")

type vrrpNode struct {
	host *netns.Host
	mgr  *svc.ExecManager
	dir  string
}

// vrrpLab starts one real keepalived per host on a throwaway LAN, each with
// the given check program, as the node service would with the Exec manager.
func vrrpLab(t *testing.T, ctx context.Context, checks ...string) []*vrrpNode {
	t.Helper()
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Skip("keepalived is not installed (Debian package keepalived)")
	}
	lab, err := netns.New(ctx, netip.MustParsePrefix("10.78.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
	})
	var nodes []*vrrpNode
	var members []Node
	prio := map[string]int{}
	for i := range checks {
		name := fmt.Sprintf("node%d", i+1)
		h, err := lab.AddHost(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &vrrpNode{host: h, dir: t.TempDir()})
		members = append(members, Node{name, h.Addr})
		prio[name] = 150 - 10*i
	}
	for i, n := range nodes {
		conf, err := RenderConfig(Params{Self: members[i], Members: members, Priorities: prio,
			ClusterID: "lab-cluster", Iface: n.host.Iface, VIP: labVIP, Check: []string{checks[i]}})
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(n.dir, "keepalived.conf")
		if err := os.WriteFile(f, conf, 0o600); err != nil {
			t.Fatal(err)
		}
		argv := append([]string{"ip", "netns", "exec", n.host.NS}, Argv(f, n.dir)...)
		n.mgr = svc.Exec(map[string][]string{Unit: argv}, n.dir)
		n.mgr.StopTimeout = 3 * time.Second
		t.Cleanup(func() {
			if err := n.mgr.Stop(context.Background(), Unit); err != nil {
				t.Error(err)
			}
			if t.Failed() {
				log, _ := os.ReadFile(filepath.Join(n.dir, Unit+".log"))
				t.Logf("%s keepalived log:\n%s", n.host.Name, log)
			}
		})
		if err := n.mgr.Start(ctx, Unit); err != nil {
			t.Fatal(err)
		}
	}
	return nodes
}

// holders lists the nodes (among live) that have the VIP on eth0.
func holders(t *testing.T, ctx context.Context, nodes []*vrrpNode, live map[*vrrpNode]bool) []*vrrpNode {
	t.Helper()
	var hs []*vrrpNode
	for _, n := range nodes {
		if !live[n] {
			continue
		}
		ok, err := n.host.HasAddr(ctx, labVIP.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			hs = append(hs, n)
		}
	}
	return hs
}

// waitSoleHolder polls until exactly one live node other than not holds the
// VIP and returns it with the time that took.
func waitSoleHolder(t *testing.T, ctx context.Context, nodes []*vrrpNode, live map[*vrrpNode]bool, not *vrrpNode) (*vrrpNode, time.Duration) {
	t.Helper()
	start := time.Now()
	for ctx.Err() == nil {
		if hs := holders(t, ctx, nodes, live); len(hs) == 1 && hs[0] != not {
			return hs[0], time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no single VIP holder after %v (holders: %v)", time.Since(start), names(holders(t, context.Background(), nodes, live)))
	return nil, 0
}

// observe checks for d that the live holder set is exactly {want}.
func observe(t *testing.T, ctx context.Context, nodes []*vrrpNode, live map[*vrrpNode]bool, want *vrrpNode, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if hs := holders(t, ctx, nodes, live); len(hs) != 1 || hs[0] != want {
			t.Fatalf("VIP holders %v, want only %s", names(hs), want.host.Name)
		}
	}
}

func names(ns []*vrrpNode) []string {
	var s []string
	for _, n := range ns {
		s = append(s, n.host.Name)
	}
	return s
}

func allLive(nodes []*vrrpNode) map[*vrrpNode]bool {
	m := map[*vrrpNode]bool{}
	for _, n := range nodes {
		m[n] = true
	}
	return m
}

func TestVRRPFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes := vrrpLab(t, ctx, "/bin/true", "/bin/true", "/bin/true")
	live := allLive(nodes)
	first, took := waitSoleHolder(t, ctx, nodes, live, nil)
	t.Logf("vip_first_claim_ms=%d holder=%s", took.Milliseconds(), first.host.Name)
	observe(t, ctx, nodes, live, first, 500*time.Millisecond)

	// A clean stop (SIGTERM to its PID): keepalived gives the VIP up and
	// says so with a priority-0 advert.
	start := time.Now()
	if err := syscall.Kill(first.mgr.PID(Unit), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	second, _ := waitSoleHolder(t, ctx, nodes, live, first)
	t.Logf("vip_failover_sigterm_ms=%d from=%s to=%s", time.Since(start).Milliseconds(), first.host.Name, second.host.Name)
	if err := first.mgr.Stop(ctx, Unit); err != nil { // reap it
		t.Fatal(err)
	}

	// nopreempt: the node that comes back must not take the VIP back.
	if err := first.mgr.Start(ctx, Unit); err != nil {
		t.Fatal(err)
	}
	observe(t, ctx, nodes, live, second, 1500*time.Millisecond)

	// A dead board: its link goes and every keepalived process with it.
	// SIGKILL leaves the VIP configured on the dead node, which is why it
	// no longer counts (its link is down, as a dead board's would be).
	start = time.Now()
	if pid := second.mgr.PID(Unit); pid > 0 {
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "-n", second.host.NS, "link", "set", second.host.Iface, "down").CombinedOutput(); err != nil {
		t.Fatalf("link down: %v %s", err, out)
	}
	live[second] = false
	third, _ := waitSoleHolder(t, ctx, nodes, live, nil)
	t.Logf("vip_failover_dead_node_ms=%d from=%s to=%s", time.Since(start).Milliseconds(), second.host.Name, third.host.Name)
	if kept, _ := second.host.HasAddr(ctx, labVIP.Addr()); kept {
		t.Logf("the SIGKILLed %s still has the VIP on its downed link", second.host.Name)
	}
}

func TestVRRPNodeWithFailingCheckNeverHoldsVIP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// node1 has the highest priority but its k3s check fails.
	nodes := vrrpLab(t, ctx, "/bin/false", "/bin/true", "/bin/true")
	live := allLive(nodes)
	holder, _ := waitSoleHolder(t, ctx, nodes, live, nodes[0])
	if holder == nodes[0] {
		t.Fatal("the node whose check fails holds the VIP")
	}
	// Long enough for several adverts and check runs (interval 2 s).
	observe(t, ctx, nodes, live, holder, 4500*time.Millisecond)
	// Nor does it take over when the holder goes.
	if err := holder.mgr.Stop(ctx, Unit); err != nil {
		t.Fatal(err)
	}
	next, _ := waitSoleHolder(t, ctx, nodes, live, holder)
	if next == nodes[0] {
		t.Fatal("the node whose check fails took the VIP over")
	}
	observe(t, ctx, nodes, live, next, time.Second)
}
