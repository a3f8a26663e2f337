package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homecloud/homecloud/firstboot/harden"
	"github.com/homecloud/homecloud/firstboot/plan"
	"github.com/homecloud/homecloud/firstboot/status"
	"github.com/homecloud/homecloud/internal/clustertest"
	"github.com/homecloud/homecloud/internal/netns"
)

var (
	binsOnce sync.Once
	bins     clustertest.Bins
	binsErr  error
	binsDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binsDir != "" {
		os.RemoveAll(binsDir)
	}
	os.Exit(code)
}

func buildBins(t *testing.T) clustertest.Bins {
	t.Helper()
	binsOnce.Do(func() {
		binsDir, binsErr = os.MkdirTemp("", "homecloud-bins")
		if binsErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			bins, binsErr = clustertest.Build(ctx, "../..", binsDir)
		}
	})
	if binsErr != nil {
		t.Fatal(binsErr)
	}
	return bins
}

var subnetSeq struct {
	sync.Mutex
	n int
}

// newCluster lays out and starts n nodes; everything is removed at the end.
func newCluster(t *testing.T, n int, start bool) *clustertest.Cluster {
	t.Helper()
	if err := netns.Available(); err != nil {
		t.Skip("cluster tests need root and iproute2: ", err)
	}
	if _, err := os.Stat("/usr/sbin/keepalived"); err != nil {
		t.Skip("cluster tests need keepalived (Debian package keepalived)")
	}
	b := buildBins(t)
	subnetSeq.Lock()
	subnetSeq.n++
	sub := netip.MustParsePrefix(fmt.Sprintf("10.78.%d.0/24", subnetSeq.n))
	subnetSeq.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, err := clustertest.New(ctx, clustertest.Options{Nodes: n, Dir: dir, Bins: b, Subnet: sub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			for _, nd := range c.Nodes {
				b, _ := os.ReadFile(nd.Log)
				t.Logf("---- %s log (running %v, last exit %v; last 6 KiB)\n%s", nd.Name, nd.Running(), nd.ExitErr(), tail(b, 6144))
				for _, u := range []string{"k3s.service", "k3s-agent.service", "keepalived.service"} {
					if b, err := os.ReadFile(filepath.Join(nd.Root, "var/lib/homecloud/logs", u+".log")); err == nil {
						t.Logf("---- %s %s\n%s", nd.Name, u, tail(b, 1024))
					}
				}
			}
		}
	})
	if start {
		for _, nd := range c.Nodes {
			if err := nd.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// serving waits until every running node reports serve and they agree.
func serving(t *testing.T, c *clustertest.Cluster, within time.Duration) map[string]*status.View {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var views map[string]*status.View
	err := clustertest.WaitFor(ctx, 200*time.Millisecond, func() (bool, string) {
		views = map[string]*status.View{}
		for _, nd := range c.Nodes {
			if !nd.Running() {
				continue
			}
			v, err := nd.Status(ctx)
			if err != nil {
				return false, err.Error()
			}
			if v.Step != "serve" || !contains(v.Done, "serve") {
				return false, fmt.Sprintf("%s at step %s (error %q)", nd.Name, v.Step, v.Error)
			}
			views[nd.Name] = v
		}
		// A snapshot taken during an election is not an answer yet.
		var plan, leader string
		for name, v := range views {
			if plan == "" {
				plan, leader = string(v.Plan), v.Leader
			}
			if string(v.Plan) != plan || v.Leader != leader || leader == "" {
				return false, fmt.Sprintf("%s: leader %q plan %s; another: leader %q plan %s", name, v.Leader, v.Plan, leader, plan)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatalf("cluster did not reach serve: %v", err)
	}
	return views
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// agreed checks one plan and one leader across the views, and returns them.
func agreed(t *testing.T, views map[string]*status.View) (plan, leader string) {
	t.Helper()
	for name, v := range views {
		if plan == "" {
			plan, leader = string(v.Plan), v.Leader
		}
		if string(v.Plan) != plan {
			t.Errorf("%s has plan %s, another node %s", name, v.Plan, plan)
		}
		if v.Leader != leader || v.Leader == "" {
			t.Errorf("%s sees leader %q, another node %q", name, v.Leader, leader)
		}
	}
	return plan, leader
}

// vipHolders lists the nodes with the VIP on their interface.
func vipHolders(c *clustertest.Cluster) []string {
	var out []string
	for _, nd := range c.Nodes {
		if nd.HoldsVIP(context.Background()) {
			out = append(out, nd.Name)
		}
	}
	return out
}

func waitOneVIP(t *testing.T, c *clustertest.Cluster, within time.Duration, not string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var h []string
	err := clustertest.WaitFor(ctx, 50*time.Millisecond, func() (bool, string) {
		h = vipHolders(c)
		return len(h) == 1 && h[0] != not, fmt.Sprintf("VIP holders %v", h)
	})
	if err != nil {
		t.Fatal(err)
	}
	return h[0]
}

func TestClusterAssembles(t *testing.T) {
	for _, n := range []int{1, 3, 4} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			c := newCluster(t, n, true)
			views := serving(t, c, 90*time.Second)
			planJSON, _ := agreed(t, views)
			holder := waitOneVIP(t, c, 30*time.Second, "")
			t.Logf("plan %s, VIP on %s", planJSON, holder)
			servers := 0
			for _, v := range views {
				if v.Role == "server" {
					servers++
				}
				if len(v.Members) != n {
					t.Errorf("%s sees %d raft members, want %d", v.Node, len(v.Members), n)
				}
			}
			want := map[int]int{1: 1, 3: 3, 4: 3}[n]
			if servers != want {
				t.Errorf("%d k3s servers, want %d", servers, want)
			}
			var p plan.Plan
			if err := json.Unmarshal([]byte(planJSON), &p); err != nil {
				t.Fatal(err)
			}
			if n == 4 && (len(p.Agents) != 1 || p.Agents[0] != "home-node4") {
				t.Errorf("4-node plan without node4 as its one agent: %+v", p)
			}
			hardened(t, c)
		})
	}
}

// hardened checks what each node's first boot did to its own root: the
// firewall's peer set holds exactly the other nodes, its LAN set the
// subnet, and root's password from the base image is locked.
func hardened(t *testing.T, c *clustertest.Cluster) {
	t.Helper()
	for _, n := range c.Nodes {
		peers, err := os.ReadFile(filepath.Join(n.Root, harden.PeersFile))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range c.Nodes {
			has := strings.Contains(string(peers), m.Host.Addr.String()+" ") || strings.Contains(string(peers), m.Host.Addr.String()+",")
			if has != (m != n) {
				t.Errorf("%s firewall peers (has %s: %v, want %v):\n%s", n.Name, m.Name, has, m != n, peers)
			}
		}
		lan, err := os.ReadFile(filepath.Join(n.Root, harden.LANFile))
		if err != nil {
			t.Fatal(err)
		}
		if want := c.Opts.Subnet.Masked().String(); !strings.Contains(string(lan), "lan4 { "+want+" }") {
			t.Errorf("%s firewall LAN set lacks %s:\n%s", n.Name, want, lan)
		}
		shadow, err := os.ReadFile(filepath.Join(n.Root, "etc/shadow"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(shadow), "root:!*:") {
			t.Errorf("%s root password not locked: %s", n.Name, shadow)
		}
	}
}
