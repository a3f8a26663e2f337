package discovery

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/enbility/zeroconf/v2"
)

const (
	fpA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	fpB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func info(name string) Info {
	return Info{ClusterID: "c0ffee", Name: name, RaftAddr: "10.77.1.11:7373", Fingerprint: fpA, State: StateNew, StatusAddr: "10.77.1.11:7380"}
}

func TestTXTRoundTrip(t *testing.T) {
	for _, in := range []Info{
		info("node1"),
		{ClusterID: "c0ffee", Name: "n2", Fingerprint: fpB, State: StateMember},
		{ClusterID: "c0ffee", Name: "n3", RaftAddr: "0.0.0.0:7373", Fingerprint: fpB, State: StateNew},
		{ClusterID: "c0ffee", Name: "n4", RaftAddr: "[fd00::4]:7373", Fingerprint: fpB, State: StateNew},
	} {
		got, err := parseTXT(in.txt())
		if err != nil {
			t.Errorf("parseTXT(%q): %v", in.txt(), err)
			continue
		}
		if got != in {
			t.Errorf("round trip of %+v gave %+v", in, got)
		}
	}
}

func TestParseTXTRejects(t *testing.T) {
	good := info("node1").txt()
	with := func(key, val string) []string {
		out := slices.Clone(good)
		for i, s := range out {
			if strings.HasPrefix(s, key+"=") {
				out[i] = key + "=" + val
			}
		}
		return out
	}
	for _, tc := range []struct {
		name, want string
		txt        []string
	}{
		{"empty record", "TXT version", nil},
		{"other version", "TXT version", with("v", "2")},
		{"no cluster", "cluster id: empty", with("cluster", "")},
		{"bad name", "name:", with("name", "-node")},
		{"dotted name", "name:", with("name", "a.b")},
		{"short fingerprint", "fingerprint", with("fp", "abc")},
		{"upper-case fingerprint", "fingerprint", with("fp", strings.ToUpper(fpA))},
		{"unknown state", "state", with("state", "leader")},
		{"raft host name", "host must be an IP", with("raft", "node1:7373")},
		{"raft port 0", "port 0", with("raft", "10.0.0.1:0")},
		{"raft port too big", "bad port", with("raft", "10.0.0.1:70000")},
		{"status without port", "status address", with("status", "10.0.0.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTXT(tc.txt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseTXT(%q) = %v, want an error containing %q", tc.txt, err, tc.want)
			}
		})
	}
}

func TestParseTXTFirstKeyWinsAndUnknownIgnored(t *testing.T) {
	txt := append([]string{"x-future=1", "boolean-flag", "name=first"}, info("second").txt()...)
	got, err := parseTXT(txt)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "first" {
		t.Errorf("name = %q, want the first occurrence %q", got.Name, "first")
	}
}

func TestResolveRaftAddr(t *testing.T) {
	announced := []netip.Addr{netip.MustParseAddr("fe80::1"), netip.MustParseAddr("10.77.1.12")}
	for _, tc := range []struct {
		raft    string
		addrs   []netip.Addr
		srvPort int
		want    string // "" means an error
	}{
		{"10.77.1.11:7373", announced, 1, "10.77.1.11:7373"},
		{"", announced, 7373, "10.77.1.12:7373"},
		{"0.0.0.0", announced, 7373, "10.77.1.12:7373"},
		{"0.0.0.0:7000", announced, 7373, "10.77.1.12:7000"},
		{":7000", announced, 7373, "10.77.1.12:7000"},
		{"[::]:7000", []netip.Addr{netip.MustParseAddr("2001:db8::5")}, 7373, "[2001:db8::5]:7000"},
		{"", []netip.Addr{netip.MustParseAddr("fe80::1")}, 7373, ""}, // link-local has no zone
		{"", announced, 0, ""},
	} {
		r, err := parseRaftAddr(tc.raft)
		if err != nil {
			t.Fatalf("parseRaftAddr(%q): %v", tc.raft, err)
		}
		got, err := r.resolve(tc.addrs, tc.srvPort)
		if tc.want == "" {
			if err == nil {
				t.Errorf("resolve(%q, %v, %d) = %q, want an error", tc.raft, tc.addrs, tc.srvPort, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("resolve(%q, %v, %d) = %q, %v; want %q", tc.raft, tc.addrs, tc.srvPort, got, err, tc.want)
		}
	}
}

// entry is what the zeroconf browse reports for an announcement.
func entry(instance string, i Info, ip string) *zeroconf.ServiceEntry {
	e := &zeroconf.ServiceEntry{Port: 7373, Text: i.txt()}
	e.Instance = instance
	if ip != "" {
		e.AddrIPv4 = []net.IP{net.ParseIP(ip)}
	}
	return e
}

func names(ps []Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name+"/"+p.State)
	}
	return out
}

func changed(w *Watcher) bool {
	select {
	case <-w.Changed():
		return true
	default:
		return false
	}
}

func TestWatcherState(t *testing.T) {
	w := newWatcher(slog.New(slog.DiscardHandler), "c0ffee")
	t0 := time.Unix(1000, 0)
	step := func(name string, f func(), wantChanged bool, want ...string) {
		t.Helper()
		f()
		if got := changed(w); got != wantChanged {
			t.Errorf("%s: changed = %v, want %v", name, got, wantChanged)
		}
		if got := names(w.Peers()); !slices.Equal(got, want) {
			t.Errorf("%s: peers = %v, want %v", name, got, want)
		}
	}
	other := info("intruder")
	other.ClusterID = "beef"
	bad := entry("broken", info("broken"), "10.77.1.9")
	bad.Text = []string{"v=1", "cluster=c0ffee", "name=broken"}
	derived := info("node3")
	derived.RaftAddr = ""
	member := info("node2")
	member.State = StateMember
	clash := info("node2")
	clash.Fingerprint = fpB

	step("first peer", func() { w.upsert(entry("node2", info("node2"), "10.77.1.12"), t0) }, true, "node2/new")
	step("same again", func() { w.upsert(entry("node2", info("node2"), "10.77.1.12"), t0.Add(time.Second)) }, false, "node2/new")
	step("second peer, sorted first", func() { w.upsert(entry("node1", info("node1"), "10.77.1.11"), t0) }, true, "node1/new", "node2/new")
	step("other cluster", func() { w.upsert(entry("intruder", other, "10.77.1.99"), t0) }, false, "node1/new", "node2/new")
	step("malformed", func() { w.upsert(bad, t0) }, false, "node1/new", "node2/new")
	step("derived raft address", func() { w.upsert(entry("node3", derived, "10.77.1.13"), t0) }, true, "node1/new", "node2/new", "node3/new")
	step("update", func() { w.upsert(entry("node2", member, "10.77.1.12"), t0.Add(2*time.Second)) }, true, "node1/new", "node2/member", "node3/new")
	step("name clash, both kept", func() { w.upsert(entry("node2-rogue", clash, "10.77.1.66"), t0.Add(3*time.Second)) }, true, "node1/new", "node2/member", "node2/new", "node3/new")
	step("removal", func() { w.remove(announcementKey(entry("node1", info("node1"), "10.77.1.11")), "test") }, true, "node2/member", "node2/new", "node3/new")
	step("clash withdrawn", func() { w.remove(announcementKey(entry("node2-rogue", clash, "10.77.1.66")), "test") }, true, "node2/member", "node3/new")
	step("turns into another cluster", func() {
		w.upsert(entry("node3", func() Info { i := derived; i.ClusterID = "beef"; return i }(), "10.77.1.13"), t0)
	}, true, "node2/member")
	step("unknown removal", func() { w.remove("nobody", "test") }, false, "node2/member")

	w.upsert(entry("node3", derived, "10.77.1.13"), t0)
	for _, p := range w.Peers() {
		if p.Name == "node3" && p.RaftAddr != "10.77.1.13:7373" {
			t.Errorf("node3 raft address = %q, want it derived from its A record and SRV port: 10.77.1.13:7373", p.RaftAddr)
		}
	}
}

func TestAnnounceRejects(t *testing.T) {
	ctx := context.Background()
	noName := info("")
	for _, tc := range []struct {
		name string
		cfg  Config
		info Info
		want string
	}{
		{"no name", Config{}, noName, "name: empty"},
		{"no port", Config{}, func() Info { i := info("n1"); i.RaftAddr = ""; return i }(), "set Config.Port"},
		{"dotted instance", Config{Instance: "a.b", Port: 1}, info("n1"), "instance"},
		{"missing interface", Config{Interfaces: []string{"nosuch0"}}, info("n1"), `interface "nosuch0"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Announce(ctx, tc.cfg, tc.info)
			if err == nil {
				a.Close()
				t.Fatal("Announce succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Announce: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := Watch(ctx, Config{Interfaces: []string{"nosuch0"}}, "c0ffee"); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("Watch on a missing interface: %v, want an error naming it", err)
	}
	if _, err := Watch(ctx, Config{}, ""); err == nil {
		t.Error("Watch without a cluster id succeeded")
	}
}
