package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/homecloud/homecloud/firstboot/k3s"
	"github.com/homecloud/homecloud/firstboot/plan"
	"github.com/homecloud/homecloud/firstboot/status"
	"github.com/homecloud/homecloud/internal/clustertest"
)

// TestSurvivorsComeBackWithoutTheInitServer: the whole cluster loses
// power and the cluster-init server's board never comes back. The other
// two hold two of three etcd members and must serve again without it.
func TestSurvivorsComeBackWithoutTheInitServer(t *testing.T) {
	c := newCluster(t, 3, true)
	p := committedPlan(t, serving(t, c, 90*time.Second))
	for _, n := range c.Nodes {
		n.Kill()
	}
	var survivors []*clustertest.Node
	for _, n := range c.Nodes {
		if n.Name == p.ClusterInit {
			continue
		}
		survivors = append(survivors, n)
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := clustertest.WaitFor(ctx, 500*time.Millisecond, func() (bool, string) {
		var why []string
		ok := true
		for _, n := range survivors {
			v, err := n.Status(ctx)
			if err != nil {
				return false, err.Error()
			}
			ok = ok && v.Step == "serve"
			why = append(why, fmt.Sprintf("%s at %s (error %q)", n.Name, v.Step, v.Error))
		}
		return ok, strings.Join(why, "; ")
	})
	if err != nil {
		t.Fatalf("with %s dead, the survivors did not serve again: %v", p.ClusterInit, err)
	}
}

// TestLateNodeJoinsTheClusterThatFormed: node1 (the lowest index, which a
// fresh plan would make the cluster-init server) shows up only after the
// other two bootstrapped without it. It must join their cluster: one
// cluster-init server in the whole cluster, and no running node changes
// its role.
func TestLateNodeJoinsTheClusterThatFormed(t *testing.T) {
	c := newCluster(t, 3, false)
	for _, n := range c.Nodes {
		n.Flags = []string{"--quorum-after", "3s"}
	}
	for _, n := range c.Nodes[1:] {
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	before := committedPlan(t, serving(t, c, 120*time.Second))
	if err := c.Nodes[0].Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	views := serving(t, c, 120*time.Second)
	after := committedPlan(t, views)
	if len(after.Members) != 3 {
		t.Fatalf("plan after node1 came: %+v, want 3 members", after)
	}
	if after.ClusterInit != before.ClusterInit {
		t.Errorf("cluster_init moved from %s to %s: a second etcd cluster", before.ClusterInit, after.ClusterInit)
	}
	for _, name := range before.Members {
		if before.Role(name) != after.Role(name) {
			t.Errorf("%s was %s, the plan now says %s: a running node cannot change role", name, before.Role(name), after.Role(name))
		}
	}
	var inits []string
	for _, n := range c.Nodes {
		b, err := os.ReadFile(filepath.Join(n.Root, k3s.ConfigPath))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "cluster-init: true") {
			inits = append(inits, n.Name)
		}
	}
	if len(inits) != 1 || inits[0] != before.ClusterInit {
		t.Errorf("k3s configs with cluster-init: %v, want only %s", inits, before.ClusterInit)
	}
}

// TestQuorumFallbackWaitsOnce: with one board dead from the start, the
// other two bootstrap after --quorum-after, not after twice that (the
// discover and agree steps each waited the whole time).
func TestQuorumFallbackWaitsOnce(t *testing.T) {
	const quorumAfter = 20 * time.Second
	c := newCluster(t, 3, false)
	start := time.Now()
	for _, n := range c.Nodes[1:] {
		n.Flags = []string{"--quorum-after", quorumAfter.String()}
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	serving(t, c, 2*quorumAfter+30*time.Second)
	// A second full wait would put serving past 2 × quorumAfter; the
	// fallback itself and the fake k3s take a few seconds.
	if took := time.Since(start); took > quorumAfter+quorumAfter*3/4 {
		t.Errorf("two of three served after %v with --quorum-after %v: the wait ran twice", took.Round(time.Second), quorumAfter)
	}
}

func committedPlan(t *testing.T, views map[string]*status.View) plan.Plan {
	t.Helper()
	raw, _ := agreed(t, views)
	var p plan.Plan
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		t.Fatalf("plan %s: %v", raw, err)
	}
	return p
}
