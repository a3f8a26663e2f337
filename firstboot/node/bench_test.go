package node_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/homecloud/homecloud/internal/clustertest"
)

// TestBenchFigures prints the node service's figures for a 4-node cluster
// as name=value lines (scripts/bench-cluster runs it). It asserts nothing
// about speed: the figures are read, not judged, here.
func TestBenchFigures(t *testing.T) {
	if os.Getenv("HOMECLOUD_BENCH") == "" {
		t.Skip("set HOMECLOUD_BENCH=1 (scripts/bench-cluster) to measure")
	}
	c := newCluster(t, 4, false)
	start := time.Now()
	for _, n := range c.Nodes {
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	views := serving(t, c, 2*time.Minute)
	assemble := time.Since(start)
	_, leader := agreed(t, views)
	waitOneVIP(t, c, 30*time.Second, "")
	rss := 0
	for _, n := range c.Nodes {
		kib, err := n.PeakRSSKiB()
		if err != nil {
			t.Fatal(err)
		}
		rss = max(rss, kib)
	}

	// Two of three voters must live: measure the leader first, then the
	// VIP on the survivors.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	killed := time.Now()
	nodeByName(c, leader).Kill()
	err := clustertest.WaitFor(ctx, 20*time.Millisecond, func() (bool, string) {
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			v, err := n.Status(ctx)
			if err != nil || v.Leader == "" || v.Leader == leader {
				return false, "old leader still seen"
			}
		}
		return true, ""
	})
	if err != nil {
		t.Fatal(err)
	}
	failover := time.Since(killed)
	holder := waitOneVIP(t, c, 30*time.Second, "")
	killed = time.Now()
	nodeByName(c, holder).Kill()
	waitOneVIP(t, c, 30*time.Second, holder)
	vip := time.Since(killed)

	fmt.Printf("assemble_s=%.2f\nleader_failover_s=%.2f\nvip_failover_s=%.2f\nrss_mib=%.1f\n",
		assemble.Seconds(), failover.Seconds(), vip.Seconds(), float64(rss)/1024)
}
