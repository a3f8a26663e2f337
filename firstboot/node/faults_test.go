package node_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/homecloud/homecloud/internal/clustertest"
)

func nodeByName(c *clustertest.Cluster, name string) *clustertest.Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func TestLeaderKilled(t *testing.T) {
	c := newCluster(t, 3, true)
	views := serving(t, c, 90*time.Second)
	planBefore, leader := agreed(t, views)
	killed := time.Now()
	nodeByName(c, leader).Kill()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var newLeader string
	err := clustertest.WaitFor(ctx, 50*time.Millisecond, func() (bool, string) {
		seen := map[string]bool{}
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			v, err := n.Status(ctx)
			if err != nil {
				return false, err.Error()
			}
			if string(v.Plan) != planBefore {
				return false, fmt.Sprintf("%s has plan %s", n.Name, v.Plan)
			}
			seen[v.Leader] = true
			newLeader = v.Leader
		}
		return len(seen) == 1 && newLeader != "" && newLeader != leader, fmt.Sprintf("leaders seen %v", seen)
	})
	if err != nil {
		t.Fatalf("no new leader after killing %s: %v", leader, err)
	}
	t.Logf("leader %s killed, %s leads after %v", leader, newLeader, time.Since(killed).Round(time.Millisecond))
}

func TestVIPHolderKilled(t *testing.T) {
	c := newCluster(t, 3, true)
	serving(t, c, 90*time.Second)
	holder := waitOneVIP(t, c, 30*time.Second, "")
	killed := time.Now()
	nodeByName(c, holder).Kill()
	next := waitOneVIP(t, c, 20*time.Second, holder)
	t.Logf("VIP moved from %s to %s in %v", holder, next, time.Since(killed).Round(time.Millisecond))
	// The others' status pages name the new holder.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := clustertest.WaitFor(ctx, 200*time.Millisecond, func() (bool, string) {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			v, err := n.Status(ctx)
			if err != nil || v.VIPHolder != next {
				return false, fmt.Sprintf("%s says the VIP is on %q (%v)", n.Name, v.VIPHolder, err)
			}
		}
		return true, ""
	})
	if err != nil {
		t.Error(err)
	}
}

// A node SIGKILLed at the start or at the end of each step, then started
// again, ends where an uninterrupted cluster does.
func TestCrashMidStepResumes(t *testing.T) {
	points := []string{"network", "discover", "agree", "agree:end", "roles", "k3s", "k3s:end", "vip", "vip:end", "deploy", "serve"}
	if testing.Short() {
		points = []string{"agree:end", "k3s"}
	}
	for _, at := range points {
		t.Run(at, func(t *testing.T) {
			c := newCluster(t, 3, false)
			victim := c.Nodes[1]
			victim.Env = []string{"HOMECLOUD_TEST_CRASH_AT=" + at}
			for _, n := range c.Nodes {
				if err := n.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := victim.Exited(ctx); err != nil {
				t.Fatalf("%s did not crash at %s: %v", victim.Name, at, err)
			}
			victim.Kill() // the VIP goes with a dead board
			victim.Env = nil
			if err := victim.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			views := serving(t, c, 90*time.Second)
			agreed(t, views)
			waitOneVIP(t, c, 30*time.Second, "")
			for _, v := range views {
				if len(v.Members) != 3 {
					t.Errorf("%s sees %d members after the crash", v.Node, len(v.Members))
				}
			}
			log, _ := os.ReadFile(victim.Log)
			if !strings.Contains(string(log), "crashing on purpose") {
				t.Errorf("%s never reached %s", victim.Name, at)
			}
		})
	}
}

// Every node loses power at once and comes back: the same cluster, from
// raft's state on disk, without a second bootstrap.
func TestPowerCycleKeepsCluster(t *testing.T) {
	c := newCluster(t, 3, true)
	before := serving(t, c, 90*time.Second)
	planBefore, _ := agreed(t, before)
	for _, n := range c.Nodes {
		n.Kill()
	}
	for _, n := range c.Nodes {
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	after := serving(t, c, 90*time.Second)
	planAfter, _ := agreed(t, after)
	if planAfter != planBefore {
		t.Errorf("plan changed across the power cycle:\n%s\n%s", planBefore, planAfter)
	}
	for name, v := range after {
		if v.Bootstrap {
			t.Errorf("%s bootstrapped raft again after the power cycle", name)
		}
		if len(v.Members) != 3 {
			t.Errorf("%s sees %d members", name, len(v.Members))
		}
	}
	waitOneVIP(t, c, 30*time.Second, "")
	for _, n := range c.Nodes {
		b, _ := os.ReadFile(filepath.Join(n.Root, "var/lib/homecloud/progress.json"))
		if !strings.Contains(string(b), `"boots": 2`) {
			t.Errorf("%s progress: %s", n.Name, b)
		}
	}
}
