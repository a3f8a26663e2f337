package keepalived

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	n1 = Node{"node1", netip.MustParseAddr("10.77.0.11")}
	n2 = Node{"node2", netip.MustParseAddr("10.77.0.12")}
	n3 = Node{"node3", netip.MustParseAddr("10.77.0.13")}
)

func params(self Node, members ...Node) Params {
	return Params{Self: self, Members: members,
		Priorities: map[string]int{"node1": 150, "node2": 140, "node3": 130},
		ClusterID:  "3f2a9c0d1e4b5a67", Iface: "eth0", VIP: netip.MustParsePrefix("10.77.0.100/24"),
		// Real programs: keepalived -t refuses scripts it cannot find.
		Check: []string{"/usr/bin/test", "-e", "/"}}
}

// configTestNS makes a namespace with an eth0 for `keepalived -t`, which
// refuses a config naming an interface that does not exist.
func configTestNS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("keepalived -t in a network namespace needs root")
	}
	for _, tool := range []string{"ip", "keepalived"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (packages iproute2, keepalived)", tool)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	ns := "hckt" + hex.EncodeToString(b)
	for _, args := range [][]string{{"netns", "add", ns}, {"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"},
		{"-n", ns, "addr", "add", "10.77.0.11/24", "dev", "eth0"}, {"-n", ns, "link", "set", "eth0", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "netns", "del", ns).Run()
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v %s", ns, err, out)
		}
	})
	return ns
}

func TestRenderConfig(t *testing.T) {
	ns := configTestNS(t)
	withNotify := params(n1, n1, n2, n3)
	withNotify.Notify = []string{"/usr/bin/logger", "-t", "homecloud-vrrp"}
	tests := []struct {
		name    string
		p       Params
		want    []string // lines that must appear
		notWant []string
	}{
		{"three members", params(n2, n1, n2, n3), []string{
			"router_id node2", "vrrp_version 3", "enable_script_security", "script_user root",
			`script "/usr/bin/test -e /"`, "interval 2", "fall 2", "rise 1", "timeout 5", "init_fail",
			"state BACKUP", "nopreempt", "interface eth0", "priority 140", "advert_int 0.1",
			"unicast_src_ip 10.77.0.12", "        10.77.0.11\n        10.77.0.13\n    }",
			"10.77.0.100/24 dev eth0", "track_script {\n        chk_k3s\n    }",
		}, []string{"authentication", "state MASTER", "        10.77.0.12\n", "notify"}},
		{"single node has no unicast peers", params(n1, n1), []string{"priority 150", "10.77.0.100/24 dev eth0"},
			[]string{"unicast_peer", "unicast_src_ip"}},
		{"notify hook", withNotify, []string{`notify "/usr/bin/logger -t homecloud-vrrp"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := RenderConfig(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			s := string(out)
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("config lacks %q:\n%s", w, s)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(s, w) {
					t.Errorf("config has %q:\n%s", w, s)
				}
			}
			if vr := "virtual_router_id " + itoa(VRID(tt.p.ClusterID)); !strings.Contains(s, vr) {
				t.Errorf("config lacks %q", vr)
			}
			f := filepath.Join(t.TempDir(), "keepalived.conf")
			os.WriteFile(f, out, 0o600)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "keepalived", "-t", "-f", f).CombinedOutput()
			if err != nil {
				t.Fatalf("keepalived -t rejects the config: %v\n%s\n%s", err, res, s)
			}
		})
	}
}

func TestRenderConfigRejects(t *testing.T) {
	tests := []struct {
		name, want string
		mod        func(*Params)
	}{
		{"interface injection", "interface name", func(p *Params) { p.Iface = "eth0\n}\nvrrp_instance x {" }},
		{"check with blank", "misread", func(p *Params) { p.Check = []string{"/bin/sh", "-c", "rm -rf /"} }},
		{"check with quote", "misread", func(p *Params) { p.Check = []string{`/bin/true"`} }},
		{"relative check", "absolute path", func(p *Params) { p.Check = []string{"true"} }},
		{"no check", "absolute path", func(p *Params) { p.Check = nil }},
		{"bad notify", "misread", func(p *Params) { p.Notify = []string{"/bin/x", "a b"} }},
		{"no priority", "priority 0", func(p *Params) { delete(p.Priorities, "node2") }},
		{"priority 255 is the owner's", "priority 255", func(p *Params) { p.Priorities["node2"] = 255 }},
		{"self not a member", "not among the members", func(p *Params) { p.Members = []Node{n1, n3} }},
		{"plan disagrees on address", "the plan gives node2", func(p *Params) { p.Self.Addr = netip.MustParseAddr("10.77.0.99") }},
		{"VIP is a node address", "VIP", func(p *Params) { p.VIP = netip.MustParsePrefix("10.77.0.13/24") }},
		{"VIP family", "family", func(p *Params) { p.VIP = netip.MustParsePrefix("fd00::1/64") }},
		{"no VIP", "VIP", func(p *Params) { p.VIP = netip.Prefix{} }},
		{"bad name", "DNS label", func(p *Params) { p.Self.Name = "node2 {" }},
		{"no cluster id", "cluster id", func(p *Params) { p.ClusterID = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := params(n2, n1, n2, n3)
			p.Priorities = map[string]int{"node1": 150, "node2": 140, "node3": 130}
			tt.mod(&p)
			_, err := RenderConfig(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RenderConfig = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestVRID(t *testing.T) {
	seen := map[int]bool{}
	for i := 0; i < 2000; i++ {
		id := hex.EncodeToString([]byte{byte(i), byte(i >> 8), 7})
		v := VRID(id)
		if v < 1 || v > 255 {
			t.Fatalf("VRID(%s) = %d, outside 1–255", id, v)
		}
		if VRID(id) != v {
			t.Fatalf("VRID(%s) not deterministic", id)
		}
		seen[v] = true
	}
	if len(seen) < 200 {
		t.Errorf("2000 cluster ids use only %d VRIDs: the hash spreads badly", len(seen))
	}
}

func TestArgvUsesOwnPidFiles(t *testing.T) {
	a := strings.Join(Argv("/x/keepalived.conf", "/run/n1"), " ")
	want := "keepalived -n -l -D -f /x/keepalived.conf -p /run/n1/keepalived.pid -r /run/n1/vrrp.pid -c /run/n1/checkers.pid"
	if a != want {
		t.Errorf("Argv = %s\nwant   %s", a, want)
	}
}

func TestHoldsVIP(t *testing.T) {
	if ok, err := HoldsVIP("lo", netip.MustParseAddr("127.0.0.1")); err != nil || !ok {
		t.Errorf("HoldsVIP(lo, 127.0.0.1) = %v, %v; want true", ok, err)
	}
	if ok, err := HoldsVIP("lo", netip.MustParseAddr("127.0.0.2")); err != nil || ok {
		t.Errorf("HoldsVIP(lo, 127.0.0.2) = %v, %v; want false (only in lo's range, not on it)", ok, err)
	}
	if _, err := HoldsVIP("nosuch0", netip.MustParseAddr("127.0.0.1")); err == nil {
		t.Error("HoldsVIP(missing interface) = nil error")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
