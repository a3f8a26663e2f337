// Package consensus runs the cluster's raft group: hashicorp/raft over TLS
// 1.3 with mutual authentication against the cluster CA, its log and
// snapshots on disk so a power cycle resumes the same cluster, and an FSM
// that holds the committed roles plan.
//
// The node service drives it: Open at boot; if HasState is false and
// ShouldBootstrap says the expected peers are all seen (each checked with
// VerifyPeer), Bootstrap with the identical full list on every node; the
// leader commits the plan with ApplyPlan and adds late or moved nodes with
// Reconcile; everyone reads the plan with WaitPlan.
package consensus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/homecloud/homecloud/firstboot/plan"
	"github.com/homecloud/homecloud/internal/cluster"
)

// LAN defaults. DESIGN §6 measured 250 ms timeouts electing a leader in
// ≈ 0.27 s, but the boards also run k3s and etcd on a slow CPU and an SD
// card, and a follower stalled past its heartbeat timeout starts a needless
// election: the boot test's VMs (TCG, three on two cores) lost their
// leader over and over at 500 ms. At hashicorp/raft's own 1 s a failover
// took 1.7–2.8 s (scripts/bench-cluster); 750 ms keeps it within 2 s
// (0.9–1.9 s measured) and the boot test's VMs steady.
const (
	DefaultHeartbeatTimeout   = 750 * time.Millisecond
	DefaultElectionTimeout    = 750 * time.Millisecond
	DefaultLeaderLeaseTimeout = 500 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
	defaultHandshakeTimeout   = 5 * time.Second
	// rpcTimeout bounds raft's I/O on a connection (scaled up for snapshots).
	rpcTimeout = 5 * time.Second
	// pollInterval is how often waits look at raft's state.
	pollInterval = 20 * time.Millisecond
)

// Config opens a raft node.
type Config struct {
	// Dir holds raft.db (log and stable store) and snapshots/; created 0700.
	Dir string
	// Bind is the ip:port the raft listener binds, e.g. "0.0.0.0:7373".
	Bind string
	// Advertise is the ip:port the other members dial. Empty means the
	// bound address, which then must not be a wildcard.
	Advertise string
	// ID is the node name; it must be the common name of Identity's
	// certificate, because peers check exactly that before admitting it.
	ID       string
	Identity *cluster.Identity
	Logger   *slog.Logger

	// Zero values take the Default* constants above.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// HandshakeTimeout bounds every TLS handshake (default 5 s).
	HandshakeTimeout time.Duration
}

// Peer is a cluster member as discovery announces it, or as the raft
// configuration holds it (Members fills ID, Addr and Voter only).
type Peer struct {
	ID          string // node name
	Addr        string // raft ip:port
	Fingerprint string // cluster.Fingerprint of its certificate
	// Index is the node's 1-based index from the builder; it orders the
	// members so every node computes the same suffrage (plan.Voters).
	Index int
	// HasState says the peer already has raft state (it is in a cluster).
	HasState bool
	Voter    bool
}

// Node is one running raft member.
type Node struct {
	id     string
	advert string
	ident  *cluster.Identity
	log    *slog.Logger
	raft   *raft.Raft
	fsm    *fsm
	stream *streamLayer
	store  *raftboltdb.BoltStore
	snaps  raft.SnapshotStore

	closeOnce sync.Once
	closeErr  error
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.HeartbeatTimeout == 0 {
		out.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if out.ElectionTimeout == 0 {
		out.ElectionTimeout = DefaultElectionTimeout
	}
	if out.LeaderLeaseTimeout == 0 {
		out.LeaderLeaseTimeout = min(DefaultLeaderLeaseTimeout, out.HeartbeatTimeout)
	}
	if out.CommitTimeout == 0 {
		out.CommitTimeout = DefaultCommitTimeout
	}
	if out.HandshakeTimeout == 0 {
		out.HandshakeTimeout = defaultHandshakeTimeout
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}

func (c *Config) validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("Dir: empty; give the raft state directory, e.g. /var/lib/homecloud/raft"))
	}
	if c.ID == "" {
		errs = append(errs, errors.New("ID: empty; give the node name"))
	}
	if c.Identity == nil {
		errs = append(errs, errors.New("Identity: nil; load it with cluster.LoadIdentity"))
	} else if cn := c.Identity.Leaf.Subject.CommonName; c.ID != "" && cn != c.ID {
		errs = append(errs, fmt.Errorf("ID %q differs from the certificate's common name %q: peers would refuse this node; use the node name from node.json", c.ID, cn))
	}
	if _, err := netip.ParseAddrPort(c.Bind); err != nil {
		errs = append(errs, fmt.Errorf("Bind %q: want ip:port, e.g. 0.0.0.0:%d: %w", c.Bind, cluster.DefaultRaftPort, err))
	}
	if c.Advertise != "" {
		if ap, err := netip.ParseAddrPort(c.Advertise); err != nil {
			errs = append(errs, fmt.Errorf("Advertise %q: want ip:port: %w", c.Advertise, err))
		} else if ap.Addr().IsUnspecified() || ap.Port() == 0 {
			errs = append(errs, fmt.Errorf("Advertise %q: peers cannot dial a wildcard address or port 0; give this node's LAN address", c.Advertise))
		}
	}
	return errors.Join(errs...)
}

// Open starts the raft node from the state in cfg.Dir (empty on first
// boot). It does not bootstrap: see ShouldBootstrap and Bootstrap.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("open raft: %w", err)
	}
	cfg = cfg.withDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("open raft: %w", err)
	}
	// bbolt waits forever for a lock another process holds; bound it.
	lockWait := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		lockWait = max(time.Until(dl), time.Millisecond)
	}
	dbPath := filepath.Join(cfg.Dir, "raft.db")
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &bbolt.Options{Timeout: lockWait}})
	if err != nil {
		return nil, fmt.Errorf("open raft store %s (is another node service running?): %w", dbPath, err)
	}
	hl := newHCLog(cfg.Logger)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl.Named("snapshot"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open raft snapshots in %s: %w", cfg.Dir, err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Bind)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("raft listen on %s: %w", cfg.Bind, err)
	}
	advert := cfg.Advertise
	if advert == "" {
		ap := netip.MustParseAddrPort(ln.Addr().String())
		if ap.Addr().IsUnspecified() {
			ln.Close()
			store.Close()
			return nil, fmt.Errorf("open raft: Bind %s is a wildcard: set Advertise to this node's LAN ip:port", cfg.Bind)
		}
		advert = ap.String()
	}
	stream := newStreamLayer(ln, advert, cfg.Identity, cfg.HandshakeTimeout, cfg.Logger)
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: rpcTimeout,
		Logger:  hl.Named("transport"),
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.Logger = hl.Named("raft")
	f := newFSM()
	r, err := raft.NewRaft(rc, f, store, store, snaps, trans)
	if err != nil {
		trans.Close()
		store.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n := &Node{id: cfg.ID, advert: advert, ident: cfg.Identity, log: cfg.Logger, raft: r, fsm: f, stream: stream, store: store, snaps: snaps}
	cfg.Logger.Info("raft started", "id", cfg.ID, "bind", cfg.Bind, "advertise", advert, "has_state", n.HasState())
	return n, nil
}

// ID is this node's raft server id (its name).
func (n *Node) ID() string { return n.id }

// Addr is the address this node advertises to its peers.
func (n *Node) Addr() string { return n.advert }

// Self is this node as a Peer for ShouldBootstrap and Bootstrap.
func (n *Node) Self(index int) Peer {
	return Peer{ID: n.id, Addr: n.advert, Fingerprint: cluster.Fingerprint(n.ident.Leaf), Index: index, HasState: n.HasState()}
}

// HasState reports whether this node has any raft state: it was
// bootstrapped, or a leader has replicated to it. Such a node must never
// bootstrap again.
func (n *Node) HasState() bool {
	ok, err := raft.HasExistingState(n.store, n.store, n.snaps)
	if err != nil {
		n.log.Warn("read raft state", "error", err)
		return true // the safe answer: a node unsure of its state does not bootstrap
	}
	return ok
}

// Leader returns the current leader's id and address, empty if none is known.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// RefusedHandshakes counts incoming connections refused at the TLS
// handshake since Open (peers without a cluster certificate, port scans)
// and RPCs refused for speaking for another member than their certificate.
// The status endpoint exports it; a rising count means a stranger knocks.
func (n *Node) RefusedHandshakes() int64 { return n.stream.refused.Load() }

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Members lists the raft configuration: ID, Addr and Voter are set.
func (n *Node) Members() ([]Peer, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	var out []Peer
	for _, s := range f.Configuration().Servers {
		out = append(out, Peer{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// ApplyPlan commits p through the log. Only the leader can; elsewhere the
// error wraps raft.ErrNotLeader (check with errors.Is).
func (n *Node) ApplyPlan(ctx context.Context, p plan.Plan) error {
	if err := p.Validate(); err != nil {
		return fmt.Errorf("apply plan: %w", err)
	}
	if !n.IsLeader() {
		return fmt.Errorf("apply plan: %w", raft.ErrNotLeader)
	}
	b, err := json.Marshal(command{Op: opSetPlan, Plan: &p})
	if err != nil {
		return fmt.Errorf("apply plan: %w", err)
	}
	f := n.raft.Apply(b, enqueueTimeout(ctx))
	if err := wait(ctx, f); err != nil {
		return fmt.Errorf("apply plan: %w", err)
	}
	if resp, ok := f.Response().(error); ok && resp != nil {
		return fmt.Errorf("apply plan: %w", resp)
	}
	return nil
}

// Plan returns the committed plan, false before any was committed (or
// replayed after a restart, which waits for a leader).
func (n *Node) Plan() (plan.Plan, bool) {
	p, ok, _ := n.fsm.current()
	return p, ok
}

// WaitPlan returns the committed plan, waiting for one if there is none yet.
func (n *Node) WaitPlan(ctx context.Context) (plan.Plan, error) {
	for {
		p, ok, changed := n.fsm.current()
		if ok {
			return p, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return plan.Plan{}, fmt.Errorf("wait for the committed plan: %w", context.Cause(ctx))
		}
	}
}

// WaitLeader waits until some member (maybe this one) is the known leader
// and returns its id.
func (n *Node) WaitLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if id, _ := n.Leader(); id != "" {
			return id, nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return "", fmt.Errorf("wait for a raft leader: %w", context.Cause(ctx))
		}
	}
}

// Close leaves gracefully: a leader first hands leadership to a caught-up
// voter (so the rest do not wait out an election timeout), then raft stops,
// the transport closes and the store is flushed.
func (n *Node) Close() error {
	if n.raft.State() == raft.Leader {
		if err := n.raft.LeadershipTransfer().Error(); err != nil && !errors.Is(err, raft.ErrNotLeader) {
			n.log.Info("no leadership transfer before shutdown", "error", err)
		}
	}
	return n.shutdown()
}

// shutdown stops without handing over leadership, as a crash would.
// Later calls return the first call's result.
func (n *Node) shutdown() error {
	n.closeOnce.Do(func() {
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shut down raft: %w", err))
		}
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft store: %w", err))
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// enqueueTimeout is how long raft may wait to accept a request: the
// context's remaining time, or unbounded (0) without a deadline.
func enqueueTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 0
}

// wait waits for a raft future or the context, whichever ends first. Raft
// futures cannot be cancelled; the request may still complete later.
func wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
