package stack

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// budgetTable sums memory requests and limits per node for the 4-node
// plan from the rendered pods (each container, not init containers, which
// finish first; CronJobs apart: they run for minutes at night) plus the
// charts' workloads and each node's baseline.
// budget is the 4-node plan's memory by node: requests and limits of
// what is placed there, of the CronJobs placed there, and of the pods
// the scheduler may put anywhere.
type budget struct {
	in             Input
	rows           []string
	req, lim, cron map[string]int
	anyReq, anyLim int
}

func budgetTable(t *testing.T) string {
	t.Helper()
	bu := computeBudget(t)
	var b strings.Builder
	b.WriteString("| workload | node | request MiB | limit MiB |\n|---|---|---:|---:|\n")
	for _, r := range bu.rows {
		b.WriteString(r + "\n")
	}
	b.WriteString("\n| node (4-node plan) | role | OS + k3s MiB | stack requests MiB | total MiB | of 2048 MiB | stack limits MiB |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, n := range bu.in.Nodes() {
		server := slices.Contains(bu.in.Servers, n)
		role := "agent, data disk"
		if server {
			role = "server"
		}
		base := Baseline(server)
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d free | %d |\n", n, role, base, bu.req[n], base+bu.req[n], 2048-base-bu.req[n], bu.lim[n])
	}
	fmt.Fprintf(&b, "| any node | pods without placement | | %d | | | %d |\n", bu.anyReq, bu.anyLim)
	return b.String()
}

// TestBudgetFits: on 2 GiB boards, every node of the 4-node plan holds
// its OS, k3s and the requests of what is placed on it, with room for its
// CronJobs when they run; the pods without placement fit into what is
// left over. With 3 nodes the data-disk node is a server and the whole
// stack does not fit (the README says so, and the builder warns).
func TestBudgetFits(t *testing.T) {
	for _, c := range []struct {
		nodes int
		fits  bool
	}{{4, true}, {5, true}, {3, false}, {1, false}} {
		t.Run(fmt.Sprint(c.nodes), func(t *testing.T) {
			in := testInput(c.nodes, true)
			files, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			m, err := MemoryOf(files, in)
			if err != nil {
				t.Fatal(err)
			}
			if probs := m.Overcommitted(in.Topology, 2048); (len(probs) == 0) != c.fits {
				t.Errorf("%d nodes: overcommitted %q, want fits=%v", c.nodes, probs, c.fits)
			}
		})
	}
}

// MemoryOf reads the rendered YAML by hand (the builder does not carry
// Kubernetes' types); the typed decode of the test must agree with it.
func TestMemoryOfMatchesTypedDecode(t *testing.T) {
	bu := computeBudget(t)
	files, err := Render(bu.in)
	if err != nil {
		t.Fatal(err)
	}
	m, err := MemoryOf(files, bu.in)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(m.Placed, bu.req) || !maps.Equal(m.Cron, bu.cron) || m.Anywhere != bu.anyReq {
		t.Errorf("MemoryOf = placed %v cron %v anywhere %d; typed decode: %v %v %d", m.Placed, m.Cron, m.Anywhere, bu.req, bu.cron, bu.anyReq)
	}
}

func TestMebibytes(t *testing.T) {
	for _, c := range []struct {
		q    string
		want int
		bad  bool
	}{{"", 0, false}, {"64Mi", 64, false}, {"1Gi", 1024, false}, {"1.5Gi", 1536, false}, {"2048Ki", 2, false},
		{"64M", 0, true}, {"lots", 0, true}, {"-1Mi", 0, true}} {
		got, err := mebibytes(c.q)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("mebibytes(%q) = %d, %v; want %d, error %v", c.q, got, err, c.want, c.bad)
		}
	}
}

func computeBudget(t *testing.T) budget {
	t.Helper()
	in := testInput(4, true)
	files, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	docs := decodeAll(t, files)
	nodes := in.Nodes()
	req, lim, cron := map[string]int{}, map[string]int{}, map[string]int{}
	var rows []string
	add := func(node string, r, l int) { req[node] += r; lim[node] += l }
	where := func(n string) string {
		if n == "" {
			return "any"
		}
		return n
	}
	anyReq, anyLim := 0, 0
	for _, p := range podTemplates(docs) {
		r, l := 0, 0
		for _, c := range p.spec.Containers {
			r += int(c.Resources.Requests.Memory().Value() >> 20)
			l += int(c.Resources.Limits.Memory().Value() >> 20)
		}
		node := p.node()
		switch {
		case p.cron:
			cron[node] += r
			rows = append(rows, fmt.Sprintf("| %s/%s (CronJob, runs briefly) | %s | %d | %d |", p.doc.ns, p.doc.name, where(node), r, l))
			continue
		case p.daemonSet:
			for _, n := range nodes {
				add(n, r, l)
			}
			node = "every node"
		case node == "":
			anyReq, anyLim = anyReq+r, anyLim+l
		default:
			add(node, r, l)
		}
		rows = append(rows, fmt.Sprintf("| %s/%s | %s | %d | %d |", p.doc.ns, p.doc.name, where(node), r, l))
	}
	for _, w := range ChartWorkloads(in.Settings) {
		node, est := "any", ""
		if w.Estimated {
			est = " (estimate)"
		}
		switch {
		case w.PerNode:
			node = "every node"
			for _, n := range nodes {
				add(n, w.RequestMi, w.LimitMi)
			}
		case w.Node == "data":
			node = in.DataDiskNode
			add(node, w.RequestMi, w.LimitMi)
		default:
			anyReq, anyLim = anyReq+w.RequestMi, anyLim+w.LimitMi
		}
		rows = append(rows, fmt.Sprintf("| %s: %s%s | %s | %d | %d |", w.Service, w.Name, est, node, w.RequestMi, w.LimitMi))
	}
	slices.Sort(rows)
	return budget{in: in, rows: rows, req: req, lim: lim, cron: cron, anyReq: anyReq, anyLim: anyLim}
}

func TestREADMEBudgetMatchesManifests(t *testing.T) {
	want := budgetTable(t)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "<!-- budget:begin -->\n", "<!-- budget:end -->"
	_, rest, ok := strings.Cut(string(readme), begin)
	got, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 || got != want {
		t.Errorf("README's budget table (between %q and %q) differs from the rendered 4-node stack; it should read:\n%s", strings.TrimSpace(begin), end, want)
	}
}
