package consensus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/raft"

	"github.com/homecloud/homecloud/firstboot/plan"
)

// ShouldBootstrap is the bootstrap_expect rule (Consul, Nomad): bootstrap
// once self and the seen peers make at least expect distinct nodes and
// none of them has raft state. A node with state means a cluster exists;
// the newcomer waits for its leader to add it (Reconcile) instead of
// founding a second one. Peers must have passed VerifyPeer.
func ShouldBootstrap(self Peer, peers []Peer, expect int) bool {
	if expect < 1 || self.HasState {
		return false
	}
	ids := map[string]bool{self.ID: true}
	for _, p := range peers {
		if p.HasState {
			return false
		}
		ids[p.ID] = true
	}
	return len(ids) >= expect
}

// Bootstrap founds the cluster with peers, which must include this node.
// Every node calls it with the identical list (order does not matter: it
// is sorted by Index, then ID), so every node writes the identical first
// configuration; suffrage follows plan.Voters. A node that already has
// state ignores it (raft.ErrCantBootstrap is not an error here), and so
// does a node that the list makes a non-voter: raft lets only voters
// bootstrap, and the leader replicates the configuration to it.
func (n *Node) Bootstrap(peers []Peer) error {
	peers = sortPeers(dedupe(peers))
	if !slices.ContainsFunc(peers, func(p Peer) bool { return p.ID == n.id }) {
		return fmt.Errorf("bootstrap raft: the peer list lacks this node (%s); pass the full list including self", n.id)
	}
	var members []plan.Member
	for _, p := range peers {
		if p.Addr == "" {
			return fmt.Errorf("bootstrap raft: peer %s has no address", p.ID)
		}
		members = append(members, plan.Member{Name: p.ID, Index: p.Index})
	}
	voters, _ := plan.Voters(members)
	var conf raft.Configuration
	for _, p := range peers {
		s := raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)}
		if slices.Contains(voters, p.ID) {
			s.Suffrage = raft.Voter
		}
		conf.Servers = append(conf.Servers, s)
	}
	if !slices.Contains(voters, n.id) {
		// Raft lets only a voter bootstrap. A non-voter listed here needs
		// nothing: the elected leader replicates the log to it.
		n.log.Info("raft bootstrap: this node is a non-voter; waiting for the leader to replicate", "voters", voters)
		return nil
	}
	err := n.raft.BootstrapCluster(conf).Error()
	if errors.Is(err, raft.ErrCantBootstrap) {
		n.log.Info("raft already bootstrapped; keeping its configuration")
		return nil
	}
	if err != nil {
		return fmt.Errorf("bootstrap raft: %w", err)
	}
	n.log.Info("raft bootstrapped", "servers", len(conf.Servers), "voters", voters)
	return nil
}

// VerifyPeer checks that a TLS server at addr holds the cluster certificate
// of wantName with fingerprint wantFingerprint (see the package function).
func (n *Node) VerifyPeer(ctx context.Context, addr, wantName, wantFingerprint string) error {
	return VerifyPeer(ctx, n.ident, addr, wantName, wantFingerprint)
}

// Reconcile, on the leader, brings the peers discovery saw into the raft
// membership: a node not yet a member is added, a member announcing a new
// address (a replaced board, a new DHCP lease) is re-added there. Each is
// first proven with VerifyPeer, so a rogue announcement — nothing
// listening, a foreign certificate, a name or fingerprint that does not
// match — never enters. Members discovery does not see are kept: mDNS
// misses a node more often than a node leaves.
//
// Suffrage: voters are kept (demoting a healthy voter only churns), and
// the free voter seats up to plan.VoterCount of the new size go to
// non-voters and newcomers in plan order (Index, then ID). Nodes joining in
// index order thus get exactly plan.Voters: the 4th is a non-voter, the 5th
// makes the 4th and 5th voters.
//
// The returned error joins one error per peer left out; the peers that
// passed are added regardless. Off the leader it wraps raft.ErrNotLeader.
func (n *Node) Reconcile(ctx context.Context, seen []Peer) error {
	if !n.IsLeader() {
		return fmt.Errorf("reconcile raft membership: %w", raft.ErrNotLeader)
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("reconcile raft membership: %w", err)
	}
	current := map[string]raft.Server{}
	voters := 0
	for _, s := range cf.Configuration().Servers {
		current[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	// A leader that came back at a new address cannot re-add itself: its
	// peers would go on sending to the old one. It hands leadership over,
	// and the next leader moves it as any member (its announcement is
	// proved like the others'). A single node has no one to hand over to,
	// and no one who needs its address.
	if self, ok := current[n.id]; ok && string(self.Address) != n.advert && len(current) > 1 {
		n.log.Warn("raft address changed on the leader: handing leadership over", "was", string(self.Address), "now", n.advert)
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("reconcile raft membership: hand leadership over after moving from %s: %w", self.Address, err)
		}
		return nil
	}
	index := map[string]int{}
	var errs []error
	var moved, fresh []Peer
	for _, p := range dedupe(seen) {
		index[p.ID] = p.Index
		if p.ID == n.id {
			continue
		}
		s, known := current[p.ID]
		if known && string(s.Address) == p.Addr {
			continue
		}
		if err := n.VerifyPeer(ctx, p.Addr, p.ID, p.Fingerprint); err != nil {
			n.log.Warn("peer not admitted to raft", "peer", p.ID, "addr", p.Addr, "error", err)
			errs = append(errs, fmt.Errorf("peer %s at %s not admitted: %w", p.ID, p.Addr, err))
			continue
		}
		if known {
			moved = append(moved, p)
		} else {
			fresh = append(fresh, p)
		}
	}

	for _, p := range moved {
		s := current[p.ID]
		if err := n.addServer(ctx, p.ID, p.Addr, s.Suffrage == raft.Voter); err != nil {
			errs = append(errs, err)
			continue
		}
		n.log.Info("raft member moved", "peer", p.ID, "from", string(s.Address), "to", p.Addr)
	}

	// Candidates for the free voter seats, in plan order: the current
	// non-voters (at their new address if they moved) and the newcomers.
	newAddr := map[string]string{}
	for _, p := range moved {
		newAddr[p.ID] = p.Addr
	}
	var cands []Peer
	for id, s := range current {
		if s.Suffrage != raft.Voter {
			cands = append(cands, Peer{ID: id, Addr: cmp.Or(newAddr[id], string(s.Address)), Index: index[id], HasState: true})
		}
	}
	for _, p := range fresh {
		cands = append(cands, Peer{ID: p.ID, Addr: p.Addr, Index: p.Index})
	}
	seats := plan.VoterCount(len(current)+len(fresh)) - voters
	for _, p := range sortPeers(cands) {
		vote := seats > 0
		if p.HasState && !vote {
			continue // a member staying a non-voter
		}
		if err := n.addServer(ctx, p.ID, p.Addr, vote); err != nil {
			errs = append(errs, err)
			continue
		}
		if vote {
			seats--
		}
		n.log.Info("raft member admitted", "peer", p.ID, "addr", p.Addr, "voter", vote, "promoted", p.HasState)
	}
	return errors.Join(errs...)
}

// addServer adds id as a voter or non-voter, or updates its address.
func (n *Node) addServer(ctx context.Context, id, addr string, voter bool) error {
	var f raft.IndexFuture
	if voter {
		f = n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx))
	} else {
		f = n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, enqueueTimeout(ctx))
	}
	if err := wait(ctx, f); err != nil {
		return fmt.Errorf("add raft member %s at %s (voter %t): %w", id, addr, voter, err)
	}
	return nil
}

// dedupe keeps the last announcement of each ID (discovery lists the
// newest last) and drops entries without an ID.
func dedupe(peers []Peer) []Peer {
	last := map[string]int{}
	for i, p := range peers {
		if p.ID != "" {
			last[p.ID] = i
		}
	}
	var out []Peer
	for i, p := range peers {
		if p.ID != "" && last[p.ID] == i {
			out = append(out, p)
		}
	}
	return out
}

// sortPeers orders peers as plan.Sorted orders members: Index, then ID.
func sortPeers(peers []Peer) []Peer {
	out := slices.Clone(peers)
	slices.SortFunc(out, func(a, b Peer) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.ID, b.ID))
	})
	return out
}
