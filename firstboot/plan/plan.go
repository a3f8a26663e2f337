// Package plan decides, from the cluster membership and the plan already
// committed, which node plays which role: k3s server or agent, who runs
// cluster-init, the keepalived priorities, which node carries the NAS data
// disk, and which raft members vote. The committed plan is an input so that
// nodes already running keep their roles when the membership grows. It is a
// pure function so every node that computes it from the same inputs gets the
// same answer, whatever order discovery saw peers in.
package plan

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// FormatVersion is the version of the Plan encoding. A node service that
// finds a committed plan with a higher version than it knows must not act on
// it (a newer release wrote it).
const FormatVersion = 1

// Keepalived priorities: the cluster-init server gets the top one so the VIP
// starts where the API comes up first; each further server gets one step
// less. VRRP priorities are 1..254; 150 with steps of 10 leaves room for 10
// servers and for a track script's weight.
const (
	topPriority  = 150
	priorityStep = 10
)

// Member is one node of the cluster as discovery (or node.json) knows it.
type Member struct {
	Name    string
	Index   int // 1-based, from the builder
	Address string
}

// Plan is the role assignment the raft leader commits.
type Plan struct {
	Version int `json:"version"`
	// Members are all node names in plan order (Index, then Name).
	Members []string `json:"members"`
	// Servers run k3s server with embedded etcd; always an odd number.
	Servers []string `json:"servers"`
	Agents  []string `json:"agents"`
	// ClusterInit is the server that starts etcd; the others join it.
	ClusterInit string `json:"cluster_init"`
	// Priorities are keepalived VRRP priorities, servers only (agents do not
	// serve the API the VIP points at); distinct, highest for ClusterInit.
	Priorities         map[string]int `json:"priorities"`
	DataDiskNode       string         `json:"data_disk_node,omitempty"`
	VIPHolderPreferred string         `json:"vip_holder_preferred"`
}

// ServerCount is the number of k3s servers (etcd members) for n nodes.
// etcd needs an odd count; 3 tolerate one failure, which is what a home
// cluster of A64 boards can afford (k3s' own profiling puts a server near
// 1.6 GB of RAM, and SD/eMMC carries etcd's fsyncs poorly), so 3 up to 6
// nodes and 5 (two failures) from 7 nodes on. Two nodes get one server:
// a second etcd member would halve availability, not double it.
func ServerCount(n int) int {
	switch {
	case n <= 0:
		return 0
	case n < 3:
		return 1
	case n < 7:
		return 3
	default:
		return 5
	}
}

// VoterCount is the number of raft voters for n members. Raft here only
// carries the plan, so a voter costs nothing but a vote; 5 voters ride out
// two failures, and more would only slow commits and elections (Consul and
// Nomad advise 3 or 5). Even counts are avoided: 4 voters split 2/2 elect no
// one, and 2 voters stop when either dies, so the extra member is a
// non-voter that still receives the log.
func VoterCount(n int) int {
	switch {
	case n <= 0:
		return 0
	case n < 3:
		return 1
	case n < 5:
		return 3
	default:
		return 5
	}
}

// Sorted returns the members in plan order (Index, then Name) with
// duplicate names dropped (the lowest index wins), without touching members.
func Sorted(members []Member) []Member {
	s := slices.Clone(members)
	slices.SortFunc(s, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Address, b.Address))
	})
	seen := make(map[string]bool, len(s))
	out := s[:0]
	for _, m := range s {
		if m.Name == "" || seen[m.Name] {
			continue
		}
		seen[m.Name] = true
		out = append(out, m)
	}
	return out
}

// Compute assigns roles. prev is the committed plan, nil before the first.
//
// Without prev, servers are the first ServerCount members in plan order and
// the first of them runs cluster-init. With prev, roles are sticky: the node
// service cannot move a running node between k3s server and agent, nor move
// cluster-init (a second cluster-init would start a second etcd cluster), so
// prev's servers stay servers, its agents stay agents and its ClusterInit
// stays. Only newcomers are placed: they fill the free server slots in plan
// order, short of one if taking them all would leave an even number of
// servers (etcd), and the rest are agents. A cluster that bootstrapped small
// (the quorum fallback) therefore keeps fewer servers than ServerCount until
// enough newcomers arrive together.
//
// ClusterInit is the preferred VIP holder and gets the top keepalived
// priority; the other servers follow in plan order. The data disk goes to
// dataDiskNode, the board the builder was told has the disk, once it is a
// member; until then it stays where prev put it (the NAS lives there), and
// a first choice goes to the highest-index agent
// (agents run no etcd, so they have the RAM and I/O to spare for the NAS),
// or to the last node when there is no agent. Members with an empty name
// are ignored.
func Compute(members []Member, dataDiskNode string, prev *Plan) Plan {
	if prev == nil {
		// Every member is then a newcomer, and an odd ServerCount of them
		// become servers: the first plan is the plain one.
		prev = &Plan{}
	}
	ms := Sorted(members)
	p := Plan{Version: FormatVersion, Members: []string{}, Servers: []string{}, Agents: []string{}, Priorities: map[string]int{}}
	kept, newcomers := 0, 0
	for _, m := range ms {
		switch prev.Role(m.Name) {
		case "server":
			kept++
		case "":
			newcomers++
		}
	}
	promote := max(0, min(newcomers, ServerCount(len(ms))-kept))
	if (kept+promote)%2 == 0 && promote > 0 {
		promote--
	}
	for _, m := range ms {
		p.Members = append(p.Members, m.Name)
		role := prev.Role(m.Name)
		if role == "" && promote > 0 {
			role = "server"
			promote--
		}
		if role == "server" {
			p.Servers = append(p.Servers, m.Name)
		} else {
			p.Agents = append(p.Agents, m.Name)
		}
	}
	switch {
	case slices.Contains(p.Servers, prev.ClusterInit):
		p.ClusterInit = prev.ClusterInit
	case len(p.Servers) > 0:
		p.ClusterInit = p.Servers[0]
	}
	p.VIPHolderPreferred = p.ClusterInit
	if p.ClusterInit != "" {
		p.Priorities[p.ClusterInit] = topPriority
	}
	for _, s := range p.Servers {
		if s != p.ClusterInit {
			p.Priorities[s] = topPriority - len(p.Priorities)*priorityStep
		}
	}
	switch {
	case slices.Contains(p.Members, dataDiskNode):
		p.DataDiskNode = dataDiskNode
	case slices.Contains(p.Members, prev.DataDiskNode):
		p.DataDiskNode = prev.DataDiskNode
	case len(p.Agents) > 0:
		p.DataDiskNode = p.Agents[len(p.Agents)-1]
	case len(p.Members) > 0:
		p.DataDiskNode = p.Members[len(p.Members)-1]
	}
	return p
}

// Voters splits the members into raft voters and non-voters: the first
// VoterCount members in plan order vote.
func Voters(members []Member) (voters, nonvoters []string) {
	ms := Sorted(members)
	nv := VoterCount(len(ms))
	for i, m := range ms {
		if i < nv {
			voters = append(voters, m.Name)
		} else {
			nonvoters = append(nonvoters, m.Name)
		}
	}
	return voters, nonvoters
}

// Validate checks that p is a plan this release can act on. A plan that
// fails it was not made by Compute (or came from a newer release).
func (p Plan) Validate() error {
	var errs []error
	if p.Version < 1 || p.Version > FormatVersion {
		errs = append(errs, fmt.Errorf("version %d: this node service knows 1..%d (upgrade it)", p.Version, FormatVersion))
	}
	if len(p.Servers) == 0 {
		errs = append(errs, errors.New("no k3s server"))
	}
	if len(p.Servers)%2 == 0 && len(p.Servers) > 0 {
		errs = append(errs, fmt.Errorf("%d k3s servers: etcd needs an odd number", len(p.Servers)))
	}
	member := make(map[string]bool, len(p.Members))
	for _, m := range p.Members {
		if member[m] {
			errs = append(errs, fmt.Errorf("member %q listed twice", m))
		}
		member[m] = true
	}
	role := make(map[string]bool, len(p.Members))
	for _, s := range slices.Concat(p.Servers, p.Agents) {
		if !member[s] {
			errs = append(errs, fmt.Errorf("role for %q, which is not a member", s))
		}
		if role[s] {
			errs = append(errs, fmt.Errorf("%q has two roles", s))
		}
		role[s] = true
	}
	if len(role) != len(member) {
		errs = append(errs, fmt.Errorf("%d members but %d roles: every member needs one", len(member), len(role)))
	}
	if !slices.Contains(p.Servers, p.ClusterInit) {
		errs = append(errs, fmt.Errorf("cluster_init %q is not a server", p.ClusterInit))
	}
	prios := make(map[int]string, len(p.Priorities))
	for name, pr := range p.Priorities {
		if !slices.Contains(p.Servers, name) {
			errs = append(errs, fmt.Errorf("keepalived priority for %q, which is not a server", name))
		}
		if other, dup := prios[pr]; dup {
			errs = append(errs, fmt.Errorf("keepalived priority %d given to both %q and %q", pr, min(name, other), max(name, other)))
		}
		prios[pr] = name
		if pr < 1 || pr > 254 {
			errs = append(errs, fmt.Errorf("keepalived priority %d for %q outside 1..254", pr, name))
		}
	}
	if p.ClusterInit != "" && p.Priorities[p.ClusterInit] != slices.Max(append([]int{0}, slices.Collect(maps.Values(p.Priorities))...)) {
		errs = append(errs, fmt.Errorf("cluster_init %q does not have the highest keepalived priority", p.ClusterInit))
	}
	if p.DataDiskNode != "" && !member[p.DataDiskNode] {
		errs = append(errs, fmt.Errorf("data_disk_node %q is not a member", p.DataDiskNode))
	}
	return errors.Join(errs...)
}

// Role names what node name does under p: "server", "agent" or "" when it
// is not a member.
func (p Plan) Role(name string) string {
	switch {
	case slices.Contains(p.Servers, name):
		return "server"
	case slices.Contains(p.Agents, name):
		return "agent"
	}
	return ""
}

// Equal reports whether two plans assign the same roles.
func (p Plan) Equal(q Plan) bool {
	return p.Version == q.Version && slices.Equal(p.Members, q.Members) &&
		slices.Equal(p.Servers, q.Servers) && slices.Equal(p.Agents, q.Agents) &&
		p.ClusterInit == q.ClusterInit && p.DataDiskNode == q.DataDiskNode &&
		p.VIPHolderPreferred == q.VIPHolderPreferred && maps.Equal(p.Priorities, q.Priorities)
}
