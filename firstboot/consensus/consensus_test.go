package consensus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func voterSplit(ms []Peer) (voters, nonvoters []string) {
	for _, m := range ms {
		if m.Voter {
			voters = append(voters, m.ID)
		} else {
			nonvoters = append(nonvoters, m.ID)
		}
	}
	slices.Sort(voters)
	slices.Sort(nonvoters)
	return voters, nonvoters
}

func TestBootstrapAndCommitPlan(t *testing.T) {
	tests := []struct {
		nodes     int
		voters    []string
		nonvoters []string
	}{
		{1, []string{"node1"}, nil},
		{3, []string{"node1", "node2", "node3"}, nil},
		{4, []string{"node1", "node2", "node3"}, []string{"node4"}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d nodes", tt.nodes), func(t *testing.T) {
			h := newHarness(t)
			start := time.Now()
			h.start(tt.nodes)
			ctx := ctxT(t, 15*time.Second)
			leader := h.leader(ctx)
			t.Logf("%d nodes: leader %s elected %v after bootstrap", tt.nodes, leader.ID(), time.Since(start).Round(time.Millisecond))

			for _, name := range h.names() {
				n := h.nodes[name]
				// A non-voter gets its state from the leader's first append.
				waitFor(t, ctx, name+" has raft state", n.HasState)
				// A repeated bootstrap (the node service resuming) is harmless.
				if err := n.Bootstrap(h.peers(h.names()...)); err != nil {
					t.Errorf("%s: second Bootstrap: %v", name, err)
				}
			}
			ms, err := leader.Members()
			if err != nil {
				t.Fatal(err)
			}
			v, nv := voterSplit(ms)
			if !slices.Equal(v, tt.voters) || !slices.Equal(nv, tt.nonvoters) {
				t.Fatalf("members: voters %v non-voters %v, want %v and %v", v, nv, tt.voters, tt.nonvoters)
			}

			p := h.plan(h.names()...)
			for _, name := range h.names() {
				if n := h.nodes[name]; n != leader {
					if err := n.ApplyPlan(ctx, p); !errors.Is(err, raft.ErrNotLeader) {
						t.Errorf("%s (follower): ApplyPlan = %v, want raft.ErrNotLeader", name, err)
					}
				}
			}
			if err := leader.ApplyPlan(ctx, p); err != nil {
				t.Fatalf("leader ApplyPlan: %v", err)
			}
			for _, name := range h.names() {
				got, err := h.nodes[name].WaitPlan(ctx)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if !got.Equal(p) {
					t.Errorf("%s: plan %+v, want %+v", name, got, p)
				}
			}
		})
	}
}

func TestLeaderFailover(t *testing.T) {
	h := newHarness(t)
	h.start(3)
	ctx := ctxT(t, 20*time.Second)
	old := h.leader(ctx)
	p := h.plan(h.names()...)
	if err := old.ApplyPlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	for _, name := range h.names() {
		if _, err := h.nodes[name].WaitPlan(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// Crash: no leadership transfer, the rest wait out the election timeout.
	killed := time.Now()
	if err := old.shutdown(); err != nil {
		t.Fatal(err)
	}
	rest := slices.DeleteFunc(h.names(), func(n string) bool { return n == old.ID() })
	leader := h.leader(ctx, rest...)
	t.Logf("failover after a crash of %s: %s leads after %v", old.ID(), leader.ID(), time.Since(killed).Round(time.Millisecond))
	for _, name := range rest {
		got, ok := h.nodes[name].Plan()
		if !ok || !got.Equal(p) {
			t.Errorf("%s after failover: plan %+v (present %t), want %+v", name, got, ok, p)
		}
	}
	// Two of three voters still commit.
	p2 := p
	p2.DataDiskNode = p.Servers[1]
	if err := leader.ApplyPlan(ctx, p2); err != nil {
		t.Fatalf("new leader ApplyPlan: %v", err)
	}

	for _, name := range rest {
		n := h.nodes[name]
		waitFor(t, ctx, name+" applies the new leader's plan", func() bool {
			got, ok := n.Plan()
			return ok && got.Equal(p2)
		})
	}
}

func TestGracefulCloseHandsOverLeadership(t *testing.T) {
	h := newHarness(t)
	h.start(3)
	ctx := ctxT(t, 15*time.Second)
	old := h.leader(ctx)
	closed := time.Now()
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	rest := slices.DeleteFunc(h.names(), func(n string) bool { return n == old.ID() })
	leader := h.leader(ctx, rest...)
	t.Logf("graceful failover: %s leads %v after Close of %s began", leader.ID(), time.Since(closed).Round(time.Millisecond), old.ID())
}

func TestRestartKeepsClusterAndPlan(t *testing.T) {
	h := newHarness(t)
	h.start(3)
	ctx := ctxT(t, 20*time.Second)
	leader := h.leader(ctx)
	p := h.plan(h.names()...)
	if err := leader.ApplyPlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	before, err := leader.Members()
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	for _, name := range h.names() {
		n := h.nodes[name]
		if _, err := n.WaitPlan(ctx); err != nil {
			t.Fatal(err)
		}
		addrs[name] = n.Addr()
	}
	// One node restores from a snapshot, the others replay their log.
	if err := h.nodes["node2"].raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot node2: %v", err)
	}
	for _, name := range h.names() {
		if err := h.nodes[name].Close(); err != nil {
			t.Fatalf("close %s: %v", name, err)
		}
	}

	// Power back on: same dirs, same addresses, no bootstrap.
	for i := 1; i <= 3; i++ {
		n := h.open(i, addrs[nodeName(i)])
		if !n.HasState() {
			t.Fatalf("%s: HasState false after restart", n.ID())
		}
		if ShouldBootstrap(n.Self(i), nil, 1) {
			t.Fatalf("%s: ShouldBootstrap true for a node with state", n.ID())
		}
	}
	leader = h.leader(ctx)
	after, err := leader.Members()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("configuration after restart %v, want %v", after, before)
	}
	for _, name := range h.names() {
		got, err := h.nodes[name].WaitPlan(ctx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.Equal(p) {
			t.Errorf("%s after restart: plan %+v, want %+v", name, got, p)
		}
	}
}

func TestLateJoinMoveAndGrow(t *testing.T) {
	h := newHarness(t)
	h.start(3)
	ctx := ctxT(t, 25*time.Second)
	leader := h.leader(ctx)
	if err := leader.ApplyPlan(ctx, h.plan(h.names()...)); err != nil {
		t.Fatal(err)
	}

	// node4 boots after the cluster formed: it sees members with state, so
	// it does not bootstrap, and waits for the leader.
	n4 := h.open(4, "127.0.0.1:0")
	if ShouldBootstrap(n4.Self(4), h.peers("node1", "node2", "node3"), 4) {
		t.Fatal("ShouldBootstrap true while the peers have state")
	}
	if err := h.nodes["node2"].Reconcile(ctx, h.peers(h.names()...)); leader.ID() != "node2" && !errors.Is(err, raft.ErrNotLeader) {
		t.Errorf("Reconcile on a follower = %v, want raft.ErrNotLeader", err)
	}
	if err := leader.Reconcile(ctx, h.peers(h.names()...)); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	ms, _ := leader.Members()
	if v, nv := voterSplit(ms); !slices.Equal(v, []string{"node1", "node2", "node3"}) || !slices.Equal(nv, []string{"node4"}) {
		t.Fatalf("after node4 joined: voters %v non-voters %v, want node1-3 and node4", v, nv)
	}
	p4 := h.plan(h.names()...)
	if err := leader.ApplyPlan(ctx, p4); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "node4 receives the plan naming it", func() bool {
		got, ok := n4.Plan()
		return ok && got.Equal(p4)
	})
	if !n4.HasState() {
		t.Error("node4: HasState false after the leader added it")
	}

	// node4 comes back on another address (new DHCP lease).
	oldAddr := n4.Addr()
	if err := n4.Close(); err != nil {
		t.Fatal(err)
	}
	n4 = h.open(4, "127.0.0.1:0")
	if err := leader.Reconcile(ctx, h.peers(h.names()...)); err != nil {
		t.Fatalf("Reconcile after move: %v", err)
	}
	ms, _ = leader.Members()
	i := slices.IndexFunc(ms, func(p Peer) bool { return p.ID == "node4" })
	if i < 0 || ms[i].Addr != n4.Addr() || ms[i].Voter {
		t.Fatalf("node4 after moving from %s to %s: %+v", oldAddr, n4.Addr(), ms)
	}
	p4b := p4
	p4b.DataDiskNode = "node3"
	if err := leader.ApplyPlan(ctx, p4b); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "node4 receives the plan at its new address", func() bool {
		got, ok := n4.Plan()
		return ok && got.Equal(p4b)
	})

	// node5 makes five: node4 and node5 get the two new voter seats.
	h.open(5, "127.0.0.1:0")
	if err := leader.Reconcile(ctx, h.peers(h.names()...)); err != nil {
		t.Fatalf("Reconcile node5: %v", err)
	}
	ms, _ = leader.Members()
	if v, nv := voterSplit(ms); len(v) != 5 || len(nv) != 0 {
		t.Fatalf("after node5 joined: voters %v non-voters %v, want all five voting", v, nv)
	}
}

func TestReconcileRejectsRogues(t *testing.T) {
	h := newHarness(t)
	h.start(1)
	ctx := ctxT(t, 15*time.Second)
	leader := h.leader(ctx)

	good := h.open(2, "127.0.0.1:0")
	spare := h.open(3, "127.0.0.1:0") // a real member cert, announced wrongly below

	rogueCA := newCA(t, "rogue")
	rogueID := newIdentity(t, rogueCA, rogueCA, "node9")
	rogue, err := Open(ctx, Config{Dir: t.TempDir(), Bind: "127.0.0.1:0", ID: "node9", Identity: rogueID, Logger: h.log.With("node", "rogue")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rogue.Close() })
	dead := closedPort(t)

	sp := spare.Self(3)
	seen := []Peer{
		rogue.Self(9), // foreign CA, truthfully announced
		{ID: "node3", Addr: sp.Addr, Fingerprint: strings.Repeat("0", 64), Index: 3}, // wrong fingerprint
		{ID: "node7", Addr: sp.Addr, Fingerprint: sp.Fingerprint, Index: 7},          // name not in the cert
		{ID: "node8", Addr: dead, Fingerprint: sp.Fingerprint, Index: 8},             // nothing listening
		{ID: "node6", Addr: good.Addr(), Fingerprint: "", Index: 6},                  // no fingerprint
		good.Self(2),
	}
	err = leader.Reconcile(ctx, seen)
	if err == nil {
		t.Fatal("Reconcile admitted every announcement, rogue ones included")
	}
	for _, want := range []string{"node9", "node3", "node7", "node8", "node6"} {
		if !strings.Contains(err.Error(), "peer "+want+" ") {
			t.Errorf("Reconcile error does not name rejected %s: %v", want, err)
		}
	}
	ms, _ := leader.Members()
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"node1", "node2"}) {
		t.Fatalf("members %v, want node1 and node2 only", ids)
	}

	// Hijack attempts: a member's name announced at another address.
	for _, hijack := range []Peer{
		{ID: "node2", Addr: rogue.Addr(), Fingerprint: rogue.Self(9).Fingerprint, Index: 2}, // foreign CA
		{ID: "node2", Addr: sp.Addr, Fingerprint: sp.Fingerprint, Index: 2},                 // another member's cert
	} {
		if err := leader.Reconcile(ctx, []Peer{hijack}); err == nil {
			t.Errorf("Reconcile accepted node2 moving to %s", hijack.Addr)
		}
	}
	ms, _ = leader.Members()
	for _, m := range ms {
		if m.ID == "node2" && m.Addr != good.Addr() {
			t.Fatalf("node2 hijacked: now at %s, want %s", m.Addr, good.Addr())
		}
	}
}

func TestForeignCertNodeCannotJoin(t *testing.T) {
	h := newHarness(t)
	h.start(1)
	ctx := ctxT(t, 15*time.Second)
	leader := h.leader(ctx)
	termBefore := leader.raft.Stats()["term"]

	// A rogue with its own CA founds a "cluster" naming the real node as a
	// voter and campaigns, asking it for (pre-)votes: every connection must
	// die at the handshake, leaving the real cluster as it was.
	rogueCA := newCA(t, "rogue")
	rogue, err := Open(ctx, Config{Dir: t.TempDir(), Bind: "127.0.0.1:0", ID: "node1x",
		Identity: newIdentity(t, rogueCA, rogueCA, "node1x"), Logger: h.log.With("node", "rogue")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rogue.Close() })
	// Three voters: the rogue needs a vote from node1 (or the silent node3).
	if err := rogue.Bootstrap([]Peer{rogue.Self(1), {ID: "node1", Addr: leader.Addr(), Index: 2}, {ID: "node3", Addr: closedPort(t), Index: 3}}); err != nil {
		t.Fatal(err)
	}
	// Let it campaign for several election timeouts.
	deadline := time.Now().Add(6 * DefaultElectionTimeout)
	for time.Now().Before(deadline) {
		if id, _ := rogue.Leader(); id != "" {
			t.Fatalf("rogue found a leader %q", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if leader.RefusedHandshakes() == 0 {
		t.Fatal("the real node refused no handshake: the rogue never knocked, the test proves nothing")
	}
	t.Logf("real node refused %d rogue handshakes", leader.RefusedHandshakes())
	if !leader.IsLeader() || leader.raft.Stats()["term"] != termBefore {
		t.Fatalf("real leader disturbed: leader %t, term %s → %s", leader.IsLeader(), termBefore, leader.raft.Stats()["term"])
	}
	ms, _ := leader.Members()
	if len(ms) != 1 || ms[0].ID != "node1" {
		t.Fatalf("members %+v, want node1 alone", ms)
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting: %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// A leader that came back at a new address cannot move itself in the
// membership (the others would keep sending to the old one): it hands
// leadership over and the next leader moves it. The first leader is the one
// that moves; the others' slow timeouts make it win the election after.
func TestMovedLeaderIsMovedByTheNext(t *testing.T) {
	h := newHarness(t)
	h.start(3)
	ctx := ctxT(t, 30*time.Second)
	mover := h.leader(ctx).ID()
	// The leader closes last, so its log is the newest and it can win the
	// next election: closed first, it could hand leadership to a follower
	// that appends an entry it never sees, and then no one votes for it.
	names := append(slices.DeleteFunc(h.names(), func(n string) bool { return n == mover }), mover)
	addrs := map[string]string{}
	for _, name := range names {
		addrs[name] = h.nodes[name].Addr()
		if err := h.nodes[name].Close(); err != nil {
			t.Fatal(err)
		}
	}
	h.timeout = 3 * time.Second
	for _, name := range names[:2] {
		h.open(h.index[name], addrs[name])
	}
	h.timeout = 200 * time.Millisecond
	moved := h.open(h.index[mover], "127.0.0.1:0") // a new lease
	if moved.Addr() == addrs[mover] {
		t.Fatalf("%s got its old address %s again", mover, moved.Addr())
	}
	if l := h.leader(ctx); l.ID() != mover {
		t.Fatalf("%s won the election, not the moved %s: nothing to hand over", l.ID(), mover)
	}
	// What every node's leader loop does each second.
	waitFor(t, ctx, mover+"'s raft address follows its move", func() bool {
		for _, name := range h.names() {
			if n := h.nodes[name]; n.IsLeader() {
				n.Reconcile(ctx, h.peers(h.names()...))
			}
		}
		ms, err := h.nodes[names[0]].Members()
		i := slices.IndexFunc(ms, func(p Peer) bool { return p.ID == mover })
		return err == nil && i >= 0 && ms[i].Addr == moved.Addr()
	})
}
