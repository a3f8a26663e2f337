package consensus

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkElection measures, per timeout setting, how long 3 fresh nodes
// take from bootstrap to an agreed leader (election_s), and how long the
// other two take to agree on a new leader after the leader crashes
// (failover_s). Read the figures with:
//
//	go test -run '^$' -bench Election -benchtime 5x ./firstboot/consensus
func BenchmarkElection(b *testing.B) {
	for _, timeout := range []time.Duration{250 * time.Millisecond, DefaultElectionTimeout} {
		b.Run(fmt.Sprintf("timeout=%v", timeout), func(b *testing.B) {
			var election, failover time.Duration
			for range b.N {
				b.StopTimer()
				h := newHarness(b)
				h.timeout = timeout
				for i := 1; i <= 3; i++ {
					h.open(i, "127.0.0.1:0")
				}
				all := h.peers(h.names()...)
				b.StartTimer()
				start := time.Now()
				for _, name := range h.names() {
					if err := h.nodes[name].Bootstrap(all); err != nil {
						b.Fatal(err)
					}
				}
				ctx := ctxT(b, 20*time.Second)
				old := h.leader(ctx)
				election += time.Since(start)
				killed := time.Now()
				if err := old.shutdown(); err != nil {
					b.Fatal(err)
				}
				h.leader(ctx, slices.DeleteFunc(h.names(), func(n string) bool { return n == old.ID() })...)
				failover += time.Since(killed)
				b.StopTimer()
				for _, n := range h.nodes {
					n.shutdown()
				}
				b.StartTimer()
			}
			b.ReportMetric(election.Seconds()/float64(b.N), "election_s")
			b.ReportMetric(failover.Seconds()/float64(b.N), "failover_s")
		})
	}
}
