package k3s

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var (
	n1 = Node{"node1", netip.MustParseAddr("10.77.0.11")}
	n2 = Node{"node2", netip.MustParseAddr("10.77.0.12")}
	n3 = Node{"node3", netip.MustParseAddr("10.77.0.13")}
	n4 = Node{"node4", netip.MustParseAddr("10.77.0.14")}
)

const tok = "K10abc::server:s3cret"

func params(self Node, servers ...Node) Params {
	return Params{Self: self, Servers: servers, InitServer: "node1", Token: tok,
		VIP: netip.MustParseAddr("10.77.0.100"), Domain: "cloud.example.org", Iface: "eth0"}
}

func TestRenderConfigPerRole(t *testing.T) {
	etcd := []any{"heartbeat-interval=500", "election-timeout=5000"}
	tests := []struct {
		name string
		p    Params
		role Role
		want map[string]any
	}{
		{"single server runs cluster-init", params(n1, n1), Server, map[string]any{
			"cluster-init": true, "token": tok, "node-name": "node1", "node-ip": "10.77.0.11",
			"flannel-iface": "eth0", "tls-san": []any{"10.77.0.100", "cloud.example.org", "10.77.0.11"},
			"disable": []any{"traefik"}, "write-kubeconfig-mode": "0600", "etcd-arg": etcd,
		}},
		{"3 servers: the init one", params(n1, n1, n2, n3), Server, map[string]any{
			"cluster-init": true, "token": tok, "node-name": "node1", "node-ip": "10.77.0.11",
			"flannel-iface": "eth0", "tls-san": []any{"10.77.0.100", "cloud.example.org", "10.77.0.11"},
			"disable": []any{"traefik"}, "write-kubeconfig-mode": "0600", "etcd-arg": etcd,
		}},
		{"3 servers: a joiner", params(n2, n1, n2, n3), Server, map[string]any{
			"server": "https://10.77.0.11:6443", "token": tok, "node-name": "node2", "node-ip": "10.77.0.12",
			"flannel-iface": "eth0", "tls-san": []any{"10.77.0.100", "cloud.example.org", "10.77.0.12"},
			"disable": []any{"traefik"}, "write-kubeconfig-mode": "0600", "etcd-arg": etcd,
		}},
		{"agent joins the init server", params(n4, n1, n2, n3), Agent, map[string]any{
			"server": "https://10.77.0.11:6443", "token": tok, "node-name": "node4", "node-ip": "10.77.0.14",
			"flannel-iface": "eth0",
		}},
		{"no VIP, domain or interface", Params{Self: n2, Servers: []Node{n1, n2}, InitServer: "node1", Token: tok}, Server, map[string]any{
			"server": "https://10.77.0.11:6443", "token": tok, "node-name": "node2", "node-ip": "10.77.0.12",
			"tls-san": []any{"10.77.0.12"}, "disable": []any{"traefik"}, "write-kubeconfig-mode": "0600", "etcd-arg": etcd,
		}},
		{"IPv6 init server is bracketed", Params{Self: n4, Servers: []Node{{"node1", netip.MustParseAddr("fd00::1")}},
			InitServer: "node1", Token: tok, DataDir: "/srv/n4/var/lib/rancher/k3s"}, Agent, map[string]any{
			"server": "https://[fd00::1]:6443", "token": tok, "node-name": "node4", "node-ip": "10.77.0.14",
			"data-dir": "/srv/n4/var/lib/rancher/k3s",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := tt.p.Role(); r != tt.role {
				t.Fatalf("Role() = %s, want %s", r, tt.role)
			}
			out, err := RenderConfig(tt.p)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]any{}
			if err := yaml.Unmarshal(out, &got); err != nil {
				t.Fatalf("output is not YAML: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("config\n got %v\nwant %v\n%s", got, tt.want, out)
			}
		})
	}
}

func TestRenderConfigRejects(t *testing.T) {
	ok := params(n2, n1, n2, n3)
	tests := []struct {
		name, want string
		mod        func(*Params)
	}{
		{"empty token", "empty token", func(p *Params) { p.Token = "" }},
		{"token with newline", "control characters", func(p *Params) { p.Token = "abc\nserver: https://evil:6443" }},
		{"init not a server", `"node9" is not among the servers`, func(p *Params) { p.InitServer = "node9" }},
		{"no servers", "no k3s servers", func(p *Params) { p.Servers = nil }},
		{"bad node name", "not a DNS label", func(p *Params) { p.Self.Name = "Node_2" }},
		{"no address", "has no address", func(p *Params) { p.Self.Addr = netip.Addr{} }},
		{"plan disagrees on address", "the plan gives node2 address", func(p *Params) { p.Self.Addr = netip.MustParseAddr("10.77.0.99") }},
		{"duplicate server", "listed twice", func(p *Params) { p.Servers = append(p.Servers, n1) }},
		{"bad interface", "interface name", func(p *Params) { p.Iface = "eth0\nfoo" }},
		{"bad domain", "domain", func(p *Params) { p.Domain = "Cloud Example" }},
		{"relative data dir", "absolute", func(p *Params) { p.DataDir = "var/lib" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			p.Servers = append([]Node(nil), ok.Servers...)
			tt.mod(&p)
			_, err := RenderConfig(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RenderConfig = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestWriteConfigIsPrivateAndReportsChange(t *testing.T) {
	root := t.TempDir()
	p := params(n1, n1)
	for i, want := range []bool{true, false} {
		changed, err := WriteConfig(root, p)
		if err != nil {
			t.Fatal(err)
		}
		if changed != want {
			t.Errorf("write %d: changed = %v, want %v", i, changed, want)
		}
	}
	fi, err := os.Stat(filepath.Join(root, ConfigPath))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600: the file holds the token", fi.Mode().Perm())
	}
	p.Domain = "other.example.org"
	if changed, err := WriteConfig(root, p); err != nil || !changed {
		t.Errorf("after a plan change: changed = %v, %v; want true", changed, err)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tok")
	os.WriteFile(f, []byte("  K10abc::server:x\n"), 0o600)
	if got, err := LoadToken(f); err != nil || got != "K10abc::server:x" {
		t.Errorf("LoadToken = %q, %v", got, err)
	}
	os.WriteFile(f, []byte("\n"), 0o600)
	if _, err := LoadToken(f); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("LoadToken(empty) = %v; want an error saying it is empty", err)
	}
	if _, err := LoadToken(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadToken(missing) = nil error")
	}
}

func TestUnits(t *testing.T) {
	if Server.Unit() != "k3s.service" || Agent.Unit() != "k3s-agent.service" {
		t.Errorf("units %s %s", Server.Unit(), Agent.Unit())
	}
}

// keepalived's check finds the API where WriteConfig put it, for every role.
func TestNodeIPReadsWrittenConfig(t *testing.T) {
	for _, self := range []Node{n1, n2, n4} {
		root := t.TempDir()
		if _, err := NodeIP(root); err == nil {
			t.Errorf("%s: NodeIP with no config: no error", self.Name)
		}
		if _, err := WriteConfig(root, params(self, n1, n2, n3)); err != nil {
			t.Fatal(err)
		}
		got, err := NodeIP(root)
		if err != nil || got != self.Addr {
			t.Errorf("%s: NodeIP = %v, %v; want %v", self.Name, got, err, self.Addr)
		}
	}
	root := t.TempDir()
	os.MkdirAll(filepath.Dir(filepath.Join(root, ConfigPath)), 0o755)
	os.WriteFile(filepath.Join(root, ConfigPath), []byte("token: x\n"), 0o600)
	if _, err := NodeIP(root); err == nil || !strings.Contains(err.Error(), "node-ip") {
		t.Errorf("config without node-ip: err = %v, want one naming node-ip", err)
	}
}
