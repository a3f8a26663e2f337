package consensus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/homecloud/homecloud/firstboot/plan"
	"github.com/homecloud/homecloud/internal/cluster"
)

// testWriter sends log lines to the test's output until the test ends;
// raft goroutines that outlive a node must not write to a finished test.
type testWriter struct {
	mu   sync.Mutex
	w    io.Writer
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	return w.w.Write(p)
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{w: t.Output()}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// newIdentity issues name's certificate from signer and loads it trusting
// trust; the three PEM files go to a temp dir.
func newIdentity(t testing.TB, signer, trust *cluster.CA, name string) *cluster.Identity {
	t.Helper()
	now := time.Now()
	c, k, err := signer.Issue(name, []net.IP{net.IPv4(127, 0, 0, 1)}, now)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string][]byte{"ca.crt": trust.CertPEM(), "node.crt": c, "node.key": k}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	id, err := cluster.LoadIdentity(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key"), now)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newCA(t testing.TB, name string) *cluster.CA {
	t.Helper()
	ca, err := cluster.NewCA(name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// harness runs several raft nodes of one cluster in the test process.
type harness struct {
	t       testing.TB
	ca      *cluster.CA
	log     *slog.Logger
	timeout time.Duration // heartbeat and election; 0 = package default
	ids     map[string]*cluster.Identity
	dirs    map[string]string
	index   map[string]int
	nodes   map[string]*Node
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, ca: newCA(t, "home"), log: testLogger(t),
		ids: map[string]*cluster.Identity{}, dirs: map[string]string{}, index: map[string]int{}, nodes: map[string]*Node{}}
}

func nodeName(i int) string { return fmt.Sprintf("node%d", i) }

// open starts (or restarts, from its dir) node i on bind ("127.0.0.1:0"
// for a fresh port).
func (h *harness) open(i int, bind string) *Node {
	h.t.Helper()
	name := nodeName(i)
	if h.ids[name] == nil {
		h.ids[name] = newIdentity(h.t, h.ca, h.ca, name)
		h.dirs[name] = h.t.TempDir()
		h.index[name] = i
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := Open(ctx, Config{Dir: h.dirs[name], Bind: bind, ID: name, Identity: h.ids[name],
		Logger: h.log.With("node", name), HeartbeatTimeout: h.timeout, ElectionTimeout: h.timeout})
	if err != nil {
		h.t.Fatalf("open %s: %v", name, err)
	}
	h.t.Cleanup(func() { n.Close() })
	h.nodes[name] = n
	return n
}

// peers is what discovery would report for the named running nodes.
func (h *harness) peers(names ...string) []Peer {
	var ps []Peer
	for _, name := range names {
		ps = append(ps, h.nodes[name].Self(h.index[name]))
	}
	return ps
}

func (h *harness) names() []string {
	var out []string
	for i := 1; i <= len(h.nodes)+10; i++ {
		if _, ok := h.nodes[nodeName(i)]; ok {
			out = append(out, nodeName(i))
		}
	}
	return out
}

// start opens nodes 1..count and bootstraps each with the identical list,
// given to each node in a different order.
func (h *harness) start(count int) {
	h.t.Helper()
	for i := 1; i <= count; i++ {
		h.open(i, "127.0.0.1:0")
	}
	all := h.peers(h.names()...)
	for i, name := range h.names() {
		rotated := append(append([]Peer(nil), all[i:]...), all[:i]...)
		self := h.nodes[name].Self(h.index[name])
		if !ShouldBootstrap(self, rotated, count) {
			h.t.Fatalf("%s: ShouldBootstrap(%d peers, expect %d) = false", name, len(rotated), count)
		}
		if err := h.nodes[name].Bootstrap(rotated); err != nil {
			h.t.Fatalf("%s: %v", name, err)
		}
	}
}

// leader waits until the running nodes agree on one leader and returns it.
func (h *harness) leader(ctx context.Context, running ...string) *Node {
	h.t.Helper()
	if len(running) == 0 {
		running = h.names()
	}
	for {
		var leaders []string
		agreed := ""
		agree := true
		for i, name := range running {
			n := h.nodes[name]
			if n.IsLeader() {
				leaders = append(leaders, name)
			}
			id, _ := n.Leader()
			if i == 0 {
				agreed = id
			} else if id != agreed {
				agree = false
			}
		}
		if len(leaders) == 1 && agree && agreed == leaders[0] {
			return h.nodes[leaders[0]]
		}
		select {
		case <-ctx.Done():
			h.t.Fatalf("no single agreed leader among %v: leaders %v", running, leaders)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *harness) plan(names ...string) plan.Plan {
	var ms []plan.Member
	for _, n := range names {
		ms = append(ms, plan.Member{Name: n, Index: h.index[n], Address: h.nodes[n].Addr()})
	}
	return plan.Compute(ms, "", nil)
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
