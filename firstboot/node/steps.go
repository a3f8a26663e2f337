package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/homecloud/homecloud/firstboot/consensus"
	"github.com/homecloud/homecloud/firstboot/discovery"
	"github.com/homecloud/homecloud/firstboot/harden"
	"github.com/homecloud/homecloud/firstboot/netcfg"
	"github.com/homecloud/homecloud/firstboot/osprep"
	"github.com/homecloud/homecloud/firstboot/plan"
	"github.com/homecloud/homecloud/firstboot/status"
	"github.com/homecloud/homecloud/internal/cluster"
)

// network: the one-time OS preparation, then wait for the LAN address.
func (n *Node) network(ctx context.Context) error {
	if n.opts.PrepOS && !n.prog.Prepared {
		// The hardening the builder could not do on files alone: the base
		// image's root password, its shared host keys, login.defs.
		if err := harden.Apply(ctx, harden.Options{Root: n.opts.Root, Logger: n.log}); err != nil {
			return err
		}
		p := &osprep.Prep{Root: n.opts.Root, Logger: n.log}
		if err := p.Hostname(ctx, n.cfg.Name); err != nil {
			return err
		}
		if _, err := p.InstallDebs(ctx, cluster.DebsDir); err != nil {
			return err
		}
		if _, err := p.Hold(ctx, n.cfg.HoldPackages); err != nil {
			return err
		}
		if err := p.SwapOff(ctx); err != nil {
			return err
		}
		n.prog.Prepared = true
		if err := n.prog.save(n.opts.StateDir); err != nil {
			return err
		}
	}
	var want netip.Addr
	if n.cfg.Network.Mode == "static" {
		want = netip.MustParsePrefix(n.cfg.Network.Address).Addr() // validated by LoadNode
	}
	iface, addr, err := netcfg.Wait(ctx, netcfg.Config{Interface: n.opts.Interface, Want: want, Logger: n.log, ProbeAfter: 30 * time.Second})
	if err != nil {
		return err
	}
	n.iface, n.addr = iface, addr
	n.log.Info("address up", "interface", iface, "addr", addr)
	// mDNS, the Kubernetes API and the NAS are open to the LAN only, and
	// with DHCP only now is the LAN known.
	lan, err := n.lanPrefixes()
	if err != nil {
		return err
	}
	if err := harden.UpdateLAN(ctx, n.opts.Root, lan); err != nil {
		return err
	}
	// On the LAN for the peers, and on loopback for `homecloud-firstboot
	// status` run on the node itself (the firewall keeps the LAN one to
	// the peers).
	for _, a := range []string{n.statusAddr(), net.JoinHostPort("127.0.0.1", strconv.Itoa(n.opts.StatusPort))} {
		go func() {
			if err := n.board.Serve(ctx, a); err != nil {
				n.log.Error("status endpoint", "err", err)
			}
		}()
	}
	return nil
}

// discover: open raft (peers verify us by dialling its port), announce
// ourselves and browse for the peers of our cluster.
func (n *Node) discover(ctx context.Context) error {
	// A retry keeps what an earlier try opened: raft holds its store's
	// lock and its port for the life of the process.
	if n.raft == nil {
		r, err := consensus.Open(ctx, consensus.Config{
			Dir: filepath.Join(n.opts.StateDir, "raft"), Bind: n.raftAddr(), Advertise: n.raftAddr(),
			ID: n.cfg.Name, Identity: n.id, Logger: n.log,
		})
		if err != nil {
			return err
		}
		n.raft = r
	}
	dcfg := discovery.Config{Interfaces: ifaces(n.iface), Instance: n.cfg.Name, Port: n.opts.RaftPort, Logger: n.log}
	if n.ann == nil {
		a, err := discovery.Announce(ctx, dcfg, n.info())
		if err != nil {
			return err
		}
		n.ann = a
	}
	if n.watcher == nil {
		w, err := discovery.Watch(ctx, dcfg, n.cfg.ClusterID)
		if err != nil {
			return err
		}
		n.watcher = w
		go n.keepFirewall(ctx)
	}
	if n.raft.HasState() {
		return nil // a member already: peers are in raft's configuration
	}
	// One clock for the whole wait for peers, here and in agree: a dead
	// board delays the others by QuorumAfter, not twice that.
	if n.waitSince.IsZero() {
		n.waitSince = time.Now()
	}
	start := n.waitSince
	for {
		seen := len(n.oneByName(n.others()))
		n.board.Update(func(v *status.View) { v.Peers = n.viewPeers() })
		if seen+1 >= n.cfg.Expect || n.anyMember() {
			n.log.Info("peers found", "seen", seen, "expect", n.cfg.Expect, "after", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if n.opts.QuorumAfter > 0 && time.Since(start) > n.opts.QuorumAfter && seen+1 > n.cfg.Expect/2 {
			n.log.Warn("bootstrapping with a quorum: not every node showed up", "seen", seen+1, "expect", n.cfg.Expect)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d peers (seen %d): %w", n.cfg.Expect-1, seen, ctx.Err())
		case <-n.watcher.Changed():
		case <-time.After(time.Second):
		}
	}
}

func ifaces(name string) []string {
	if name == "" {
		return nil
	}
	return []string{name}
}

func (n *Node) info() discovery.Info {
	st := discovery.StateNew
	if n.raft != nil && n.raft.HasState() {
		st = discovery.StateMember
	}
	return discovery.Info{
		ClusterID: n.cfg.ClusterID, Name: n.cfg.Name, RaftAddr: n.raftAddr(),
		Fingerprint: cluster.Fingerprint(n.id.Leaf), State: st, StatusAddr: n.statusAddr(),
	}
}

// others are the announcements of our cluster seen over mDNS, without
// ourselves: candidates, possibly several for one name, since anyone can
// claim any name.
func (n *Node) others() []discovery.Peer {
	var out []discovery.Peer
	for _, p := range n.watcher.Peers() {
		if p.Name != n.cfg.Name {
			out = append(out, p)
		}
	}
	return out
}

func (n *Node) anyMember() bool {
	for _, p := range n.others() {
		if p.State == discovery.StateMember {
			return true
		}
	}
	return false
}

// oneByName keeps one announcement per name, the proved one if any, so
// that a name claimed several times counts once.
func (n *Node) oneByName(peers []discovery.Peer) []discovery.Peer {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []discovery.Peer
	at := map[string]int{}
	for _, p := range peers {
		i, dup := at[p.Name]
		if !dup {
			at[p.Name] = len(out)
			out = append(out, p)
		} else if n.verified[p.Name] == claimOf(p) {
			out[i] = p
		}
	}
	return out
}

func (n *Node) viewPeers() []status.Peer {
	var out []status.Peer
	for _, p := range n.oneByName(n.others()) {
		out = append(out, status.Peer{Name: p.Name, RaftAddr: p.RaftAddr, State: p.State})
	}
	return out
}

var indexRE = regexp.MustCompile(`node(\d+)$`)

// indexOf gives a node's 1-based index from its name (<cluster>-node<N>),
// which the builder makes; 0 when the name has another form.
func indexOf(name string) int {
	m := indexRE.FindStringSubmatch(name)
	if m == nil {
		return 0
	}
	i, _ := strconv.Atoi(m[1])
	return i
}

// Proving announced peers: a handshake is bounded, a few run at once, and
// an announcement that failed is left alone for a while, so a device that
// announces many names pointing nowhere cannot stall bootstrap or the
// leader's rounds (each of them would cost verifyTimeout in turn).
const (
	verifyTimeout  = 3 * time.Second
	verifyParallel = 32
	// A real peer can fail once (still starting, a slow emulated board):
	// the pause starts short and doubles with each failure.
	refusedFirst = 2 * time.Second
	refusedMax   = time.Minute
)

// refusal is when an announcement may be tried again, and the pause
// after its next failure.
type refusal struct {
	until time.Time
	next  time.Duration
}

// verifiedPeers are the mDNS peers that proved, by a TLS handshake against
// the cluster CA, that they hold the certificate they announce, one per
// name. mDNS is unauthenticated: nothing else from it is trusted, and every
// announcement of a name is tried, so a false claim cannot hide the node.
func (n *Node) verifiedPeers(ctx context.Context) []consensus.Peer {
	// Announcements differing only in the host they came from dial the
	// same address: one handshake proves them all.
	var peers []discovery.Peer
	tried := map[string]bool{}
	for _, p := range n.others() {
		if key := p.Name + " " + p.Fingerprint + " " + p.RaftAddr; !tried[key] {
			tried[key] = true
			peers = append(peers, p)
		}
	}
	ok := make([]bool, len(peers))
	now := time.Now()
	sem := make(chan struct{}, verifyParallel)
	var wg sync.WaitGroup
	n.mu.Lock()
	for k, r := range n.refused {
		if now.After(r.until.Add(refusedMax)) { // long gone: forget it
			delete(n.refused, k)
		}
	}
	for i, p := range peers {
		proved := claimOf(p)
		key := p.Name + " " + p.Fingerprint + " " + p.RaftAddr
		if n.verified[p.Name] == proved {
			ok[i] = true
			continue
		}
		if r, refused := n.refused[key]; refused && now.Before(r.until) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
			err := n.raft.VerifyPeer(vctx, p.RaftAddr, p.Name, p.Fingerprint)
			cancel()
			if ctx.Err() == nil {
				n.watcher.Proof(p.Name, p.Fingerprint, p.RaftAddr, err == nil)
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			if err != nil {
				n.log.Warn("peer refused", "peer", p.Name, "addr", p.RaftAddr, "err", err)
				pause := max(refusedFirst, n.refused[key].next)
				n.refused[key] = refusal{until: time.Now().Add(pause), next: min(2*pause, refusedMax)}
				return
			}
			delete(n.refused, key)
			n.verified[p.Name] = proved
			ok[i] = true
		}()
	}
	n.mu.Unlock()
	wg.Wait()
	var proved []discovery.Peer
	for i, p := range peers {
		if ok[i] {
			proved = append(proved, p)
		}
	}
	var out []consensus.Peer
	for _, p := range n.oneByName(proved) {
		out = append(out, consensus.Peer{ID: p.Name, Addr: p.RaftAddr, Fingerprint: p.Fingerprint,
			Index: indexOf(p.Name), HasState: p.State == discovery.StateMember})
	}
	return out
}

// agree: bootstrap raft with every expected node (Consul's
// bootstrap_expect), or wait for the leader to add us.
func (n *Node) agree(ctx context.Context) error {
	self := n.raft.Self(n.cfg.Index)
	start := n.waitSince
	if start.IsZero() { // restarted after discover finished
		start = time.Now()
		n.waitSince = start
	}
	for !n.inConfig() {
		if !n.raft.HasState() && !n.prog.Bootstrapped {
			peers := n.verifiedPeers(ctx)
			expect := n.cfg.Expect
			// After QuorumAfter, a majority of the expected nodes may
			// start without the rest (a dead board must not block the
			// cluster forever); two majorities cannot both form.
			late := n.opts.QuorumAfter > 0 && time.Since(start) > n.opts.QuorumAfter
			if late && len(peers)+1 > n.cfg.Expect/2 && len(peers)+1 < expect {
				expect = len(peers) + 1
			}
			if consensus.ShouldBootstrap(self, peers, expect) {
				if err := n.raft.Bootstrap(append([]consensus.Peer{self}, peers...)); err != nil {
					return err
				}
				n.prog.Bootstrapped = true
				n.board.Update(func(v *status.View) { v.Bootstrap = true })
				if err := n.prog.save(n.opts.StateDir); err != nil {
					return err
				}
				n.log.Info("bootstrapped raft", "members", len(peers)+1)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting to join the raft group: %w", ctx.Err())
		case <-n.watcher.Changed():
		case <-time.After(500 * time.Millisecond):
		}
	}
	if _, err := n.raft.WaitLeader(ctx); err != nil {
		return err
	}
	if err := n.ann.Update(n.info()); err != nil {
		n.log.Warn("announce member state", "err", err)
	}
	go n.leaderLoop(ctx)
	return nil
}

func (n *Node) inConfig() bool {
	ms, err := n.raft.Members()
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.ID == n.cfg.Name {
			return true
		}
	}
	return false
}

// leaderLoop runs on every node for its life and acts only while it leads:
// it adds verified newcomers and commits the plan for the membership.
func (n *Node) leaderLoop(ctx context.Context) {
	every(ctx, time.Second, func() {
		if !n.raft.IsLeader() {
			return
		}
		if err := n.raft.Reconcile(ctx, n.verifiedPeers(ctx)); err != nil {
			n.log.Warn("reconcile membership", "err", err)
		}
		ms, err := n.raft.Members()
		if err != nil {
			return
		}
		members := make([]plan.Member, 0, len(ms))
		for _, m := range ms {
			host, _, _ := net.SplitHostPort(m.Addr)
			members = append(members, plan.Member{Name: m.ID, Index: indexOf(m.ID), Address: host})
		}
		cur, ok := n.raft.Plan()
		var prev *plan.Plan
		if ok {
			prev = &cur
		}
		want := plan.Compute(members, n.dataDiskNode(), prev)
		if ok && cur.Equal(want) {
			return
		}
		if err := n.raft.ApplyPlan(ctx, want); err != nil {
			n.log.Warn("commit plan", "err", err)
			return
		}
		n.log.Info("plan committed", "servers", want.Servers, "agents", want.Agents, "cluster_init", want.ClusterInit)
	})
}

// dataDiskNode is the node the builder named for the NAS data disk.
func (n *Node) dataDiskNode() string { return n.cfg.DataDiskNode }

// roles: wait until the committed plan includes this node.
func (n *Node) roles(ctx context.Context) error {
	for {
		if p, ok := n.raft.Plan(); ok && p.Role(n.cfg.Name) != "" {
			n.setPlan(p)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a plan that includes %s: %w", n.cfg.Name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
