package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/homecloud/homecloud/firstboot/plan"
)

func TestShouldBootstrap(t *testing.T) {
	self := Peer{ID: "node1"}
	p := func(id string, state bool) Peer { return Peer{ID: id, HasState: state} }
	tests := []struct {
		name   string
		self   Peer
		peers  []Peer
		expect int
		want   bool
	}{
		{"alone, expect 1", self, nil, 1, true},
		{"all seen", self, []Peer{p("node2", false), p("node3", false)}, 3, true},
		{"self listed too", self, []Peer{p("node1", false), p("node2", false), p("node3", false)}, 3, true},
		{"one missing", self, []Peer{p("node2", false)}, 3, false},
		{"duplicates do not count", self, []Peer{p("node2", false), p("node2", false)}, 3, false},
		{"more than expected", self, []Peer{p("node2", false), p("node3", false), p("node4", false)}, 3, true},
		{"a peer has state", self, []Peer{p("node2", true), p("node3", false)}, 3, false},
		{"self has state", Peer{ID: "node1", HasState: true}, []Peer{p("node2", false), p("node3", false)}, 3, false},
		{"expect 0 is a config error", self, nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ShouldBootstrap(tt.self, tt.peers, tt.expect); got != tt.want {
				t.Fatalf("ShouldBootstrap = %t, want %t", got, tt.want)
			}
		})
	}
}

func TestBootstrapNeedsSelf(t *testing.T) {
	h := newHarness(t)
	n := h.open(1, "127.0.0.1:0")
	err := n.Bootstrap([]Peer{{ID: "node2", Addr: "127.0.0.1:1", Index: 2}})
	if err == nil || !strings.Contains(err.Error(), "lacks this node") {
		t.Fatalf("Bootstrap without self = %v", err)
	}
	if n.HasState() {
		t.Fatal("a refused bootstrap left state behind")
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	ca := newCA(t, "home")
	id := newIdentity(t, ca, ca, "node1")
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dir", Config{Bind: "127.0.0.1:0", ID: "node1", Identity: id}, "Dir"},
		{"no identity", Config{Dir: t.TempDir(), Bind: "127.0.0.1:0", ID: "node1"}, "Identity"},
		{"id is not the cert name", Config{Dir: t.TempDir(), Bind: "127.0.0.1:0", ID: "node2", Identity: id}, "common name"},
		{"bind without port", Config{Dir: t.TempDir(), Bind: "127.0.0.1", ID: "node1", Identity: id}, "Bind"},
		{"wildcard advertise", Config{Dir: t.TempDir(), Bind: "127.0.0.1:0", Advertise: "0.0.0.0:7373", ID: "node1", Identity: id}, "wildcard"},
		{"wildcard bind, no advertise", Config{Dir: t.TempDir(), Bind: "0.0.0.0:0", ID: "node1", Identity: id}, "Advertise"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxT(t, 5*time.Second)
			n, err := Open(ctx, tt.cfg)
			if err == nil {
				n.Close()
				t.Fatal("Open accepted the config")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	p := plan.Compute([]plan.Member{{Name: "a", Index: 1}, {Name: "b", Index: 2}}, "", nil)
	data, _ := json.Marshal(command{Op: opSetPlan, Plan: &p})
	f := newFSM()
	if r := f.Apply(&raft.Log{Type: raft.LogCommand, Index: 1, Data: data}); r != nil {
		t.Fatalf("Apply: %v", r)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// A later apply must not leak into the snapshot already taken.
	q := plan.Compute([]plan.Member{{Name: "c", Index: 1}}, "", nil)
	data2, _ := json.Marshal(command{Op: opSetPlan, Plan: &q})
	f.Apply(&raft.Log{Type: raft.LogCommand, Index: 2, Data: data2})
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}

	g := newFSM()
	if _, ok, _ := g.current(); ok {
		t.Fatal("fresh FSM has a plan")
	}
	if err := g.Restore(io.NopCloser(&sink)); err != nil {
		t.Fatal(err)
	}
	got, ok, _ := g.current()
	if !ok || !got.Equal(p) {
		t.Fatalf("restored plan %+v (%t), want %+v", got, ok, p)
	}
	// The copy handed out is the caller's to change.
	got.Priorities["a"] = 1
	if again, _, _ := g.current(); again.Priorities["a"] != 150 {
		t.Fatal("a caller's change reached the FSM")
	}

	if err := g.Restore(io.NopCloser(strings.NewReader("not json"))); err == nil {
		t.Fatal("Restore accepted garbage")
	}
	for _, bad := range []string{`{"op":"frobnicate"}`, `{"op":"set-plan"}`, `{`} {
		if r := g.Apply(&raft.Log{Type: raft.LogCommand, Index: 3, Data: []byte(bad)}); r == nil {
			t.Errorf("Apply(%s) = nil, want an error", bad)
		}
	}
	if got2, _, _ := g.current(); !got2.Equal(p) {
		t.Fatal("a rejected command changed the plan")
	}
}

func TestApplyPlanRejectsInvalidPlan(t *testing.T) {
	h := newHarness(t)
	h.start(1)
	ctx := ctxT(t, 10*time.Second)
	leader := h.leader(ctx)
	if err := leader.ApplyPlan(ctx, plan.Plan{Version: 1}); err == nil || !strings.Contains(err.Error(), "no k3s server") {
		t.Fatalf("ApplyPlan(empty plan) = %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := leader.WaitPlan(wctx); err == nil {
		t.Fatal("WaitPlan returned a plan none committed")
	}
}

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Named("raft").Named("x").Info("initial configuration", "servers", hclog.Fmt("%+v", []int{1, 2}))
	l.Debug("hidden")
	got := buf.String()
	for _, want := range []string{"logger=raft.x", `servers="[1 2]"`} {
		if !strings.Contains(got, want) {
			t.Errorf("log line %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "hidden") || l.IsDebug() || !l.IsInfo() {
		t.Errorf("levels not honoured: IsDebug %t IsInfo %t, output %q", l.IsDebug(), l.IsInfo(), got)
	}
}
