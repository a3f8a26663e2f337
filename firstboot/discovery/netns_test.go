package discovery

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homecloud/homecloud/internal/netns"
)

// The nodes run as subprocesses inside their namespaces: a Go process's
// sockets belong to the namespace of the thread that opened them, and the
// runtime moves goroutines between threads.
const helperEnv = "HOMECLOUD_DISCOVERY_HELPER"

// TestHelperProcess is one node: it announces itself, watches its cluster
// and prints every view of it as a JSON line. Commands on stdin:
// "member" updates its state, "close" withdraws it and exits.
func TestHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return // only run as a subprocess by TestLAN
	}
	os.Exit(helper())
}

func helper() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := Config{Interfaces: []string{"eth0"}, Logger: log, Port: 7373}
	in := Info{
		ClusterID:   os.Getenv("HC_CLUSTER"),
		Name:        os.Getenv("HC_NAME"),
		RaftAddr:    os.Getenv("HC_RAFT"),
		Fingerprint: os.Getenv("HC_FP"),
		State:       StateNew,
	}
	w, err := Watch(ctx, cfg, in.ClusterID)
	if err != nil {
		log.Error("watch", "err", err)
		return 1
	}
	a, err := Announce(ctx, cfg, in)
	if err != nil {
		log.Error("announce", "err", err)
		return 1
	}
	var mu sync.Mutex // one writer of stdout at a time
	emit := func(v any) {
		b, _ := json.Marshal(v)
		mu.Lock()
		os.Stdout.Write(append(b, '\n'))
		mu.Unlock()
	}
	go func() {
		for range w.Changed() {
			emit(w.Peers())
		}
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "member":
			in.State = StateMember
			if err := a.Update(in); err != nil {
				log.Error("update", "err", err)
				return 1
			}
		case "close":
			a.Close()
			return 0
		}
	}
	a.Close()
	return 0
}

// node is one helper process and what it printed.
type node struct {
	name, cluster, raft string
	host                *netns.Host
	cmd                 *exec.Cmd
	stdin               io.WriteCloser
	stderr              *strings.Builder
}

// lan collects every node's latest view of its cluster.
type lan struct {
	t       *testing.T
	mu      sync.Mutex
	views   map[string][]Peer          // latest view, by node name
	ever    map[string]map[string]bool // every peer name each node ever saw
	updated chan struct{}
}

func (l *lan) start(ctx context.Context, n *node) {
	t := l.t
	cmd := n.host.Command(ctx, os.Args[0], "-test.run=^TestHelperProcess$")
	sum := sha256.Sum256([]byte(n.name))
	cmd.Env = append(os.Environ(), helperEnv+"=1", "HC_CLUSTER="+n.cluster, "HC_NAME="+n.name,
		"HC_RAFT="+n.raft, "HC_FP="+hex.EncodeToString(sum[:]))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if n.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	n.stderr = new(strings.Builder)
	cmd.Stderr = &lockedWriter{w: n.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", n.name, n.host.NS, err)
	}
	n.cmd = cmd
	l.mu.Lock()
	if l.ever[n.name] == nil {
		l.ever[n.name] = map[string]bool{}
	}
	l.mu.Unlock()
	exited := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill() // `ip netns exec` execs the helper: this is its PID
		<-exited
		stderr := cmd.Stderr.(*lockedWriter).String()
		if strings.Contains(stderr, "DATA RACE") { // the helper runs with -race when the test does
			t.Errorf("%s (pid %d): the race detector fired", n.name, cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("%s (pid %d) stderr:\n%s", n.name, cmd.Process.Pid, stderr)
		}
	})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var v []Peer
			if json.Unmarshal(sc.Bytes(), &v) != nil {
				continue
			}
			l.mu.Lock()
			l.views[n.name] = v
			for _, p := range v {
				l.ever[n.name][p.Name] = true
			}
			l.mu.Unlock()
			select {
			case l.updated <- struct{}{}:
			default:
			}
		}
		cmd.Wait()
	}()
}

// waitFor waits until ok holds for the latest views, or fails the test
// after a deadline generous enough for lost packets and re-queries. It
// returns the time since since.
func (l *lan) waitFor(what string, since time.Time, ok func(views map[string][]Peer) bool) time.Duration {
	l.t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		l.mu.Lock()
		done := ok(l.views)
		var snapshot []string
		for name, v := range l.views {
			snapshot = append(snapshot, fmt.Sprintf("%s sees %v", name, summary(v)))
		}
		slices.Sort(snapshot)
		l.mu.Unlock()
		if done {
			return time.Since(since)
		}
		select {
		case <-l.updated:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			l.t.Fatalf("%s: not within 15 s; latest views:\n%s", what, strings.Join(snapshot, "\n"))
		}
	}
}

func summary(ps []Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name+"@"+p.RaftAddr+"/"+p.State)
	}
	return out
}

// newLAN makes a lab on subnet, closed after the test's processes died.
func newLAN(t *testing.T, subnet string) (context.Context, *netns.Lab, *lan) {
	if err := netns.Available(); err != nil {
		t.Skipf("skipping mDNS test in network namespaces: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	lab, err := netns.New(ctx, netip.MustParsePrefix(subnet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // registered first: runs after the processes are killed
		if err := lab.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return ctx, lab, &lan{t: t, views: map[string][]Peer{}, ever: map[string]map[string]bool{}, updated: make(chan struct{}, 1)}
}

// TestLAN runs a cluster of three, an intruder of another cluster, an
// update, a withdrawal and a restart on one LAN.
func TestLAN(t *testing.T) {
	ctx, lab, l := newLAN(t, "10.77.53.0/24")
	cluster := "c1" + lab.ID
	var nodes []*node
	// Three ways to give the raft address: explicit, empty, unspecified.
	for i, raft := range []string{"%s:7373", "", "0.0.0.0:7373", "%s:7373"} {
		name := fmt.Sprintf("node%d", i+1)
		h, err := lab.AddHost(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		n := &node{name: name, cluster: cluster, host: h, raft: raft}
		if strings.Contains(raft, "%s") {
			n.raft = fmt.Sprintf(raft, h.Addr)
		}
		if i == 3 {
			n.name, n.cluster = "intruder", "c2"+lab.ID
		}
		nodes = append(nodes, n)
	}
	members, intruder := nodes[:3], nodes[3]
	want := func(ns ...*node) []string {
		var out []string
		for _, n := range ns {
			out = append(out, fmt.Sprintf("%s@%s:7373/%s", n.name, n.host.Addr, StateNew))
		}
		return out
	}
	allSee := func(watchers []*node, peers []string) func(map[string][]Peer) bool {
		return func(v map[string][]Peer) bool {
			for _, n := range watchers {
				if !slices.Equal(summary(v[n.name]), peers) {
					return false
				}
			}
			return true
		}
	}

	t0 := time.Now()
	for _, n := range nodes {
		l.start(ctx, n)
	}
	// Every node sees the cluster including itself: that is what the LAN
	// shows, and it proves the node's own announcements go out.
	d := l.waitFor("members see each other", t0, allSee(members, want(members...)))
	t.Logf("discovery of all 3 members (incl. self) took %v from starting the first process", d.Round(time.Millisecond))
	l.waitFor("intruder sees itself", time.Now(), allSee([]*node{intruder}, []string{fmt.Sprintf("intruder@%s:7373/new", intruder.host.Addr)}))

	fmt.Fprintln(members[0].stdin, "member")
	d = l.waitFor("node1's update is seen", time.Now(), func(v map[string][]Peer) bool {
		for _, n := range members[1:] {
			if vs := v[n.name]; len(vs) == 0 || vs[0].Name != "node1" || vs[0].State != StateMember {
				return false
			}
		}
		return true
	})
	t.Logf("update new→member reached both peers in %v", d.Round(time.Millisecond))

	fmt.Fprintln(members[2].stdin, "close")
	d = l.waitFor("node3 disappears after Close", time.Now(), func(v map[string][]Peer) bool {
		for _, n := range members[:2] {
			if got := v[n.name]; len(got) != 2 || got[0].Name != "node1" || got[1].Name != "node2" {
				return false
			}
		}
		return true
	})
	t.Logf("removal after Close reached both peers in %v", d.Round(time.Millisecond))

	t0 = time.Now()
	l.start(ctx, members[2])
	d = l.waitFor("node3 reappears after a restart", t0, func(v map[string][]Peer) bool {
		for _, n := range members[:2] {
			if got := v[n.name]; len(got) != 3 || got[2].Name != "node3" || got[2].RaftAddr != members[2].host.Addr.String()+":7373" {
				return false
			}
		}
		return true
	})
	t.Logf("restarted node3 reappeared at both peers in %v", d.Round(time.Millisecond))

	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range members {
		if l.ever[n.name]["intruder"] {
			t.Errorf("%s saw the intruder of another cluster", n.name)
		}
	}
	if got := l.ever["intruder"]; len(got) != 1 {
		t.Errorf("intruder saw %v, want only itself", got)
	}
}

// TestLANWithoutDefaultRoute: multicast sends fail with "network
// unreachable" in a namespace without a default route unless every packet
// names its interface; announcing, browsing and Update's query all must.
func TestLANWithoutDefaultRoute(t *testing.T) {
	ctx, lab, l := newLAN(t, "10.77.54.0/24")
	var nodes []*node
	t0 := time.Now()
	for _, name := range []string{"node1", "node2"} {
		h, err := lab.AddHost(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Run(ctx, "ip", "route", "del", "default"); err != nil {
			t.Fatal(err)
		}
		n := &node{name: name, cluster: "c3" + lab.ID, host: h}
		nodes = append(nodes, n)
		l.start(ctx, n)
	}
	both := func(state1 string) func(map[string][]Peer) bool {
		want := []string{
			fmt.Sprintf("node1@%s:7373/%s", nodes[0].host.Addr, state1),
			fmt.Sprintf("node2@%s:7373/new", nodes[1].host.Addr),
		}
		return func(v map[string][]Peer) bool {
			return slices.Equal(summary(v["node1"]), want) && slices.Equal(summary(v["node2"]), want)
		}
	}
	d := l.waitFor("both nodes see each other without a default route", t0, both(StateNew))
	t.Logf("discovery of 2 nodes without a default route took %v from adding the first host", d.Round(time.Millisecond))
	fmt.Fprintln(nodes[0].stdin, "member")
	d = l.waitFor("node1's update is seen without a default route", time.Now(), both(StateMember))
	t.Logf("update without a default route took %v", d.Round(time.Millisecond))
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.String()
}
