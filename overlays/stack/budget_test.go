package stack

import (
	"fmt"
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

// TestBudgetFits: on 2 GiB boards, every node holds its OS, k3s and
// the requests of what is placed on it, with room for its CronJobs when
// they run; the pods without placement fit into what is left over.
func TestBudgetFits(t *testing.T) {
	const boardMiB = 2048
	bu := computeBudget(t)
	left := 0
	for _, n := range bu.in.Nodes() {
		used := Baseline(slices.Contains(bu.in.Servers, n)) + bu.req[n] + bu.cron[n]
		if used > boardMiB {
			t.Errorf("%s: OS + k3s + requests + CronJobs = %d MiB, more than the board's %d", n, used, boardMiB)
		}
		left += max(0, boardMiB-used)
	}
	if bu.anyReq > left {
		t.Errorf("pods without placement request %d MiB; the nodes have %d MiB left", bu.anyReq, left)
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
