// Package node is homecloud-firstboot's state machine: network → discover →
// agree → roles → k3s → vip → deploy → serve. Every step is idempotent and
// the durable state lives on disk (raft's own store and progress.json), so
// a node killed at any point, or a whole cluster power-cycled, continues to
// the same end state when started again.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/homecloud/homecloud/firstboot/consensus"
	"github.com/homecloud/homecloud/firstboot/discovery"
	"github.com/homecloud/homecloud/firstboot/status"
	"github.com/homecloud/homecloud/firstboot/svc"
	"github.com/homecloud/homecloud/internal/cluster"
)

// Options configure one node. Every host path is under Root and every port
// and interface is configurable, so one machine can run many nodes.
type Options struct {
	Root       string
	StateDir   string // default <Root>/var/lib/homecloud
	Interface  string // LAN interface; empty picks the first Ethernet one
	RaftPort   int
	StatusPort int
	Services   svc.Manager
	// CheckArgv is keepalived's track script: it must fail while the local
	// k3s API is not ready.
	CheckArgv []string
	// QuorumAfter lets a node bootstrap with a majority of the expected
	// nodes when the rest have not shown up after this long (0: never).
	QuorumAfter time.Duration
	// PrepOS runs the one-time OS tasks (hostname, .debs, holds, swap).
	PrepOS bool
	// Notify receives sd_notify lines ("READY=1", "STATUS=…"); may be nil.
	Notify func(string)
	Logger *slog.Logger
	Now    func() time.Time
	// CrashAt is fault injection for tests: "STEP" kills the process with
	// SIGKILL as STEP begins, "STEP:end" once its work is done but before
	// it is recorded; only on the node's first boot.
	CrashAt string
}

func (o *Options) path(p string) string { return filepath.Join(o.Root, p) }

// Node is one running node service.
type Node struct {
	opts  Options
	log   *slog.Logger
	cfg   *cluster.Node
	id    *cluster.Identity
	prog  progress
	board status.Board

	iface string
	addr  netip.Addr

	raft    *consensus.Node
	ann     *discovery.Announcer
	watcher *discovery.Watcher

	// waitSince is when this run started waiting for its peers (discover,
	// then agree), for the quorum fallback.
	waitSince time.Time

	mu sync.Mutex
	// verified holds, by name, the fingerprint and raft address a TLS
	// handshake proved: name and fingerprint are public (mDNS), so an
	// announcement that moves a name to another address is proved again.
	verified map[string]provedPeer
	// refused holds, by name, fingerprint and address, when an
	// announcement whose handshake failed may be tried again.
	refused map[string]refusal
}

// Load reads node.json and the TLS files and checks them: a malformed
// config or a certificate that is foreign or expired stops the node here,
// before it talks to anyone.
func Load(opts Options) (*Node, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.StateDir == "" {
		opts.StateDir = opts.path(cluster.StateDir)
	}
	if opts.RaftPort == 0 {
		opts.RaftPort = cluster.DefaultRaftPort
	}
	if opts.StatusPort == 0 {
		opts.StatusPort = cluster.DefaultStatusPort
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Services == nil {
		return nil, errors.New("no service manager")
	}
	cfg, err := cluster.LoadNode(opts.path(cluster.NodeConfigPath))
	if err != nil {
		return nil, err
	}
	id, err := cluster.LoadIdentity(opts.path(cluster.CACertPath), opts.path(cluster.NodeCertPath), opts.path(cluster.NodeKeyPath), opts.Now())
	if err != nil {
		return nil, err
	}
	if want := cluster.ID(id.CA); cfg.ClusterID != want {
		return nil, fmt.Errorf("node config: cluster_id %s does not match the CA in %s (%s): the image mixes two clusters' files", cfg.ClusterID, cluster.CACertPath, want)
	}
	if id.Leaf.Subject.CommonName != cfg.Name {
		return nil, fmt.Errorf("node certificate is for %q, node.json says %q", id.Leaf.Subject.CommonName, cfg.Name)
	}
	n := &Node{opts: opts, cfg: cfg, id: id, log: opts.Logger.With("node", cfg.Name), verified: map[string]provedPeer{}, refused: map[string]refusal{}}
	return n, nil
}

// Run runs the steps, then serves until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	var err error
	if n.prog, err = loadProgress(n.opts.StateDir); err != nil {
		return err
	}
	n.prog.Boots++
	if err := n.prog.save(n.opts.StateDir); err != nil {
		return fmt.Errorf("state dir %s: %w", n.opts.StateDir, err)
	}
	n.board.Update(func(v *status.View) {
		v.Node, v.ClusterID, v.VIP, v.Started = n.cfg.Name, n.cfg.ClusterID, n.cfg.VIP, n.opts.Now()
	})
	n.board.Probe = n.probe
	defer n.close()
	// Ready as soon as the config and keys checked out: the steps can take
	// minutes (a lone board waits for its peers for ever), and systemd
	// would kill a unit that stays "activating" past TimeoutStartSec and
	// hold multi-user.target for it. STATUS= tells where the node is.
	n.notify("READY=1")

	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"network", n.network}, {"discover", n.discover}, {"agree", n.agree}, {"roles", n.roles},
		{"k3s", n.k3s}, {"vip", n.vip}, {"deploy", n.deploy}, {"serve", n.serve},
	}
	for _, s := range steps {
		n.log.Info("step", "step", s.name)
		n.notify("STATUS=" + s.name)
		n.board.Update(func(v *status.View) { v.Step = s.name })
		n.prog.Step = s.name
		if err := n.prog.save(n.opts.StateDir); err != nil {
			return err
		}
		n.maybeCrash(s.name)
		if err := n.retry(ctx, s.name, s.fn); err != nil {
			return err
		}
		n.maybeCrash(s.name + ":end")
		n.prog.markDone(s.name)
		if err := n.prog.save(n.opts.StateDir); err != nil {
			return err
		}
		n.board.Update(func(v *status.View) { v.Done = append([]string(nil), n.prog.Done...) })
	}
	<-ctx.Done()
	return nil
}

// retry runs a step until it succeeds: steps are idempotent, and what
// fails them (a peer not up yet, a membership change in flight) passes.
// Only the end of ctx stops it.
func (n *Node) retry(ctx context.Context, name string, fn func(context.Context) error) error {
	backoff := time.Second
	for {
		err := fn(ctx)
		if err == nil {
			n.board.Update(func(v *status.View) { v.Error = "" })
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("step %s: %w", name, err)
		}
		n.log.Warn("step failed, retrying", "step", name, "err", err, "in", backoff)
		n.board.Update(func(v *status.View) { v.Error = err.Error() })
		select {
		case <-ctx.Done():
			return fmt.Errorf("step %s: %w", name, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (n *Node) maybeCrash(at string) {
	if n.opts.CrashAt == at && n.prog.Boots == 1 {
		n.log.Warn("crashing on purpose", "at", at)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not deliverable late, but never go on
	}
}

func (n *Node) notify(s string) {
	if n.opts.Notify != nil {
		n.opts.Notify(s)
	}
}

func (n *Node) close() {
	if n.ann != nil {
		n.ann.Close()
	}
	if n.raft != nil {
		if err := n.raft.Close(); err != nil {
			n.log.Warn("raft shutdown", "err", err)
		}
	}
}

func (n *Node) raftAddr() string {
	return net.JoinHostPort(n.addr.String(), strconv.Itoa(n.opts.RaftPort))
}

func (n *Node) statusAddr() string {
	return net.JoinHostPort(n.addr.String(), strconv.Itoa(n.opts.StatusPort))
}

// every runs f now and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		f()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
