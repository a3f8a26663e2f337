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
			p := Compute(ms, tt.dataDisk)
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
				if q := Compute(shuffled, tt.dataDisk); !q.Equal(p) {
					t.Fatalf("order %v gave %+v, want %+v", shuffled, q, p)
				}
			}
		})
	}
}

func TestComputeOrdersByIndexNotName(t *testing.T) {
	ms := []Member{{Name: "node10", Index: 10}, {Name: "node2", Index: 2}, {Name: "node1", Index: 1}, {Name: "b", Index: 3}, {Name: "a", Index: 3}}
	p := Compute(ms, "")
	want := []string{"node1", "node2", "a", "b", "node10"}
	if !slices.Equal(p.Members, want) {
		t.Fatalf("members = %v, want %v", p.Members, want)
	}
	if !slices.Equal(p.Servers, want[:3]) {
		t.Fatalf("servers = %v, want %v", p.Servers, want[:3])
	}
}

func TestComputeEmpty(t *testing.T) {
	p := Compute(nil, "x")
	if len(p.Servers) != 0 || p.ClusterInit != "" || p.DataDiskNode != "" {
		t.Fatalf("empty membership gave %+v", p)
	}
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "no k3s server") {
		t.Fatalf("Validate(empty plan) = %v, want no k3s server", err)
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
	good := Compute(nodes(4), "")
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
			p := Compute(nodes(4), "")
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
	p := Compute(nodes(4), "")
	for name, want := range map[string]string{"homecloud-node1": "server", "homecloud-node4": "agent", "stranger": ""} {
		if got := p.Role(name); got != want {
			t.Errorf("Role(%q) = %q, want %q", name, got, want)
		}
	}
}
