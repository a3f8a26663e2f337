package plan

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func nodes(n int) []Member {
	var ms []Member
	for i := 1; i <= n; i++ {
		ms = append(ms, Member{Name: fmt.Sprintf("homecloud-node%d", i), Index: i, Address: fmt.Sprintf("10.0.0.%d", 10+i)})
	}
	return ms
}

func TestCompute(t *testing.T) {
	const n = "homecloud-node"
	tests := []struct {
		nodes    int
		dataDisk string
		servers  []string
		agents   []string
		prios    map[string]int
		disk     string
	}{
		{1, "", []string{n + "1"}, nil, map[string]int{n + "1": 150}, n + "1"},
		{2, "", []string{n + "1"}, []string{n + "2"}, map[string]int{n + "1": 150}, n + "2"},
		{3, "", []string{n + "1", n + "2", n + "3"}, nil, map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "3"},
		{4, "", []string{n + "1", n + "2", n + "3"}, []string{n + "4"}, map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "4"},
		{4, n + "2", []string{n + "1", n + "2", n + "3"}, []string{n + "4"}, map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "2"},
		{4, "not-a-member", []string{n + "1", n + "2", n + "3"}, []string{n + "4"}, map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "4"},
		{5, "", []string{n + "1", n + "2", n + "3"}, []string{n + "4", n + "5"}, map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "5"},
		{6, "", []string{n + "1", n + "2", n + "3"}, []string{n + "4", n + "5", n + "6"}, map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "6"},
		{7, "", []string{n + "1", n + "2", n + "3", n + "4", n + "5"}, []string{n + "6", n + "7"},
			map[string]int{n + "1": 150, n + "2": 140, n + "3": 130, n + "4": 120, n + "5": 110}, n + "7"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d nodes disk %q", tt.nodes, tt.dataDisk), func(t *testing.T) {
			ms := nodes(tt.nodes)
			p := Compute(ms, tt.dataDisk, nil)
			if err := p.Validate(); err != nil {
				t.Errorf("Compute made an invalid plan: %v", err)
			}
			if !slices.Equal(p.Servers, tt.servers) {
				t.Errorf("servers = %v, want %v", p.Servers, tt.servers)
			}
			if !slices.Equal(p.Agents, tt.agents) && !(len(p.Agents) == 0 && len(tt.agents) == 0) {
				t.Errorf("agents = %v, want %v", p.Agents, tt.agents)
			}
			if p.ClusterInit != n+"1" || p.VIPHolderPreferred != n+"1" {
				t.Errorf("cluster-init %q, VIP holder %q, want %s1 for both", p.ClusterInit, p.VIPHolderPreferred, n)
			}
			if fmt.Sprint(p.Priorities) != fmt.Sprint(tt.prios) {
				t.Errorf("priorities = %v, want %v", p.Priorities, tt.prios)
			}
			if p.DataDiskNode != tt.disk {
				t.Errorf("data disk node = %q, want %q", p.DataDiskNode, tt.disk)
			}
			if len(p.Members) != tt.nodes {
				t.Errorf("members = %v, want %d", p.Members, tt.nodes)
			}

			// Any discovery order, duplicates included, gives the same plan.
			rng := rand.New(rand.NewPCG(uint64(tt.nodes), 7))
			for range 20 {
				shuffled := slices.Clone(ms)
				rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
				shuffled = append(shuffled, shuffled[rng.IntN(len(shuffled))])
				if q := Compute(shuffled, tt.dataDisk, nil); !q.Equal(p) {
					t.Fatalf("order %v gave %+v, want %+v", shuffled, q, p)
				}
			}
		})
	}
}

func TestComputeOrdersByIndexNotName(t *testing.T) {
	ms := []Member{{Name: "node10", Index: 10}, {Name: "node2", Index: 2}, {Name: "node1", Index: 1}, {Name: "b", Index: 3}, {Name: "a", Index: 3}}
	p := Compute(ms, "", nil)
	want := []string{"node1", "node2", "a", "b", "node10"}
	if !slices.Equal(p.Members, want) {
		t.Fatalf("members = %v, want %v", p.Members, want)
	}
	if !slices.Equal(p.Servers, want[:3]) {
		t.Fatalf("servers = %v, want %v", p.Servers, want[:3])
	}
}

func TestComputeEmpty(t *testing.T) {
	p := Compute(nil, "x", nil)
	if len(p.Servers) != 0 || p.ClusterInit != "" || p.DataDiskNode != "" {
		t.Fatalf("empty membership gave %+v", p)
	}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "no k3s server") {
		t.Fatalf("Validate(empty plan) = %v, want no k3s server", err)
	}
}

// only picks members of nodes(n) by number, so a step can leave some out.
func only(n int, picks ...int) []Member {
	all := nodes(n)
	var ms []Member
	for _, i := range picks {
		ms = append(ms, all[i-1])
	}
	return ms
}

// TestComputeSticky grows the membership step by step, each plan computed
// from the one before as the leader does, and checks that no running node
// changes role, cluster-init or data disk on the way.
func TestComputeSticky(t *testing.T) {
	const n = "homecloud-node"
	tests := []struct {
		name     string
		steps    [][]Member
		dataDisk string
		servers  []string
		agents   []string
		init     string
		prios    map[string]int
		disk     string
	}{
		{"node1 late after a quorum fallback", [][]Member{only(3, 2, 3), only(3, 1, 2, 3)}, "",
			[]string{n + "2"}, []string{n + "1", n + "3"}, n + "2", map[string]int{n + "2": 150}, n + "3"},
		{"node1 and node4 late together", [][]Member{only(4, 2, 3), only(4, 1, 2, 3, 4)}, "",
			[]string{n + "1", n + "2", n + "4"}, []string{n + "3"}, n + "2", map[string]int{n + "2": 150, n + "1": 140, n + "4": 130}, n + "3"},
		{"4 to 5 nodes", [][]Member{nodes(4), nodes(5)}, "",
			[]string{n + "1", n + "2", n + "3"}, []string{n + "4", n + "5"}, n + "1", map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "4"},
		{"4 to 6 nodes, configured disk not a member", [][]Member{nodes(4), nodes(6)}, "not-a-member",
			[]string{n + "1", n + "2", n + "3"}, []string{n + "4", n + "5", n + "6"}, n + "1", map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "4"},
		{"the data-disk node dead at bootstrap, back later", [][]Member{only(4, 1, 2, 3), nodes(4)}, n + "4",
			[]string{n + "1", n + "2", n + "3"}, []string{n + "4"}, n + "1", map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "4"},
		{"1, 2, 3 nodes one by one", [][]Member{nodes(1), nodes(2), nodes(3)}, "",
			[]string{n + "1"}, []string{n + "2", n + "3"}, n + "1", map[string]int{n + "1": 150}, n + "1"},
		{"5 to 7 nodes: two newcomers become servers", [][]Member{nodes(5), nodes(7)}, "",
			[]string{n + "1", n + "2", n + "3", n + "6", n + "7"}, []string{n + "4", n + "5"}, n + "1",
			map[string]int{n + "1": 150, n + "2": 140, n + "3": 130, n + "6": 120, n + "7": 110}, n + "5"},
		{"6 to 7 nodes: one newcomer would make 4 servers", [][]Member{nodes(6), nodes(7)}, "",
			[]string{n + "1", n + "2", n + "3"}, []string{n + "4", n + "5", n + "6", n + "7"}, n + "1",
			map[string]int{n + "1": 150, n + "2": 140, n + "3": 130}, n + "6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prev *Plan
			var p Plan
			for i, ms := range tt.steps {
				p = Compute(ms, tt.dataDisk, prev)
				if err := p.Validate(); err != nil {
					t.Fatalf("step %d: invalid plan %+v: %v", i+1, p, err)
				}
				if prev != nil {
					for _, name := range prev.Members {
						if p.Role(name) != prev.Role(name) {
							t.Errorf("step %d: %s went from %s to %s", i+1, name, prev.Role(name), p.Role(name))
						}
					}
				}
				prev = &p
			}
			if !slices.Equal(p.Servers, tt.servers) || !slices.Equal(p.Agents, tt.agents) {
				t.Errorf("servers %v agents %v, want %v and %v", p.Servers, p.Agents, tt.servers, tt.agents)
			}
			if p.ClusterInit != tt.init || p.VIPHolderPreferred != tt.init {
				t.Errorf("cluster-init %q, VIP holder %q, want %q for both", p.ClusterInit, p.VIPHolderPreferred, tt.init)
			}
			if fmt.Sprint(p.Priorities) != fmt.Sprint(tt.prios) {
				t.Errorf("priorities = %v, want %v", p.Priorities, tt.prios)
			}
			if p.DataDiskNode != tt.disk {
				t.Errorf("data disk node = %q, want %q", p.DataDiskNode, tt.disk)
			}
			// The leader recomputes every second: the committed plan must
			// give itself back, in any discovery order, or it would be
			// committed again and again.
			last := slices.Clone(tt.steps[len(tt.steps)-1])
			slices.Reverse(last)
			if q := Compute(last, tt.dataDisk, &p); !q.Equal(p) {
				t.Errorf("recomputing from the committed plan gave %+v, want %+v", q, p)
			}
		})
	}
}

func TestVoters(t *testing.T) {
	tests := []struct{ nodes, voters, nonvoters int }{
		{1, 1, 0}, {2, 1, 1}, {3, 3, 0}, {4, 3, 1}, {5, 5, 0}, {6, 5, 1}, {9, 5, 4},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.nodes), func(t *testing.T) {
			ms := nodes(tt.nodes)
			slices.Reverse(ms)
			v, nv := Voters(ms)
			if len(v) != tt.voters || len(nv) != tt.nonvoters {
				t.Fatalf("Voters(%d) = %v + %v, want %d voters + %d non-voters", tt.nodes, v, nv, tt.voters, tt.nonvoters)
			}
			if v[0] != "homecloud-node1" {
				t.Fatalf("first voter %q, want the lowest index", v[0])
			}
			if len(v)%2 == 0 {
				t.Fatalf("%d voters: raft needs an odd count", len(v))
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	good := Compute(nodes(4), "", nil)
	tests := []struct {
		name   string
		change func(p *Plan)
		want   string
	}{
		{"newer version", func(p *Plan) { p.Version = FormatVersion + 1 }, "upgrade"},
		{"even servers", func(p *Plan) { p.Servers = p.Servers[:2]; p.Agents = append(p.Agents, "homecloud-node3") }, "odd"},
		{"unknown server", func(p *Plan) { p.Servers[1] = "ghost" }, "not a member"},
		{"two roles", func(p *Plan) { p.Agents = append(p.Agents, "homecloud-node1") }, "two roles"},
		{"cluster-init agent", func(p *Plan) { p.ClusterInit = "homecloud-node4" }, "not a server"},
		{"duplicate priority", func(p *Plan) { p.Priorities["homecloud-node2"] = 150 }, "given to both"},
		{"agent priority", func(p *Plan) { p.Priorities["homecloud-node4"] = 100 }, "not a server"},
		{"disk elsewhere", func(p *Plan) { p.DataDiskNode = "nas" }, "data_disk_node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Compute(nodes(4), "", nil)
			tt.change(&p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(Compute(4)) = %v", err)
	}
}

func TestRole(t *testing.T) {
	p := Compute(nodes(4), "", nil)
	for name, want := range map[string]string{"homecloud-node1": "server", "homecloud-node4": "agent", "stranger": ""} {
		if got := p.Role(name); got != want {
			t.Errorf("Role(%q) = %q, want %q", name, got, want)
		}
	}
}
