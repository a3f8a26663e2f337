package harden

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/internal/netns"
	"github.com/homecloud/homecloud/overlays"
)

// dropWait bounds how long a dropped connection attempt is given: a drop
// shows as silence (no RST, no ICMP), so the only sign is that nothing
// arrives. Allowed traffic crosses a veth in microseconds.
const dropWait = 800 * time.Millisecond

func requireNft(t *testing.T) {
	t.Helper()
	if err := netns.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipping: nft not found in PATH (package nftables)")
	}
}

// overlayRules renders the image's firewall files for a node and writes
// them under root, with the include pointed at root's set directory.
func overlayRules(t *testing.T, root string, n cluster.Node) string {
	t.Helper()
	data := struct {
		Node      cluster.Node
		Board     struct{ Name, EthDriver, EthPath string }
		AdminUser string
	}{Node: n, AdminUser: "family"}
	files, err := overlays.Render(data)
	if err != nil {
		t.Fatal(err)
	}
	var conf string
	for _, f := range files {
		if f.Path != NftablesConf && !strings.HasPrefix(f.Path, SetsDir+"/") {
			continue
		}
		body := strings.ReplaceAll(string(f.Data), `include "`+SetsDir+`/`, `include "`+filepath.Join(root, SetsDir)+`/`)
		p := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if f.Path == NftablesConf {
			conf = p
		}
	}
	if conf == "" {
		t.Fatalf("overlays render no %s", NftablesConf)
	}
	return conf
}

// inNS runs fn on a thread inside the named network namespace: sockets
// made there, and programs started there, belong to it.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is in the wrong namespace: never hand it back.
		runtime.Goexit()
	}
	return ferr
}

func lab(t *testing.T, names ...string) (*netns.Lab, map[string]*netns.Host) {
	t.Helper()
	ctx := context.Background()
	l, err := netns.New(ctx, netip.MustParsePrefix("10.79.3.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	hosts := map[string]*netns.Host{}
	for _, n := range names {
		h, err := l.AddHost(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		hosts[n] = h
	}
	return l, hosts
}

// TestRulesetSyntax: nft accepts the image's ruleset and the set files the
// node writes, with and without elements, in either order.
func TestRulesetSyntax(t *testing.T) {
	requireNft(t)
	_, h := lab(t, "node")
	ctx := context.Background()
	for _, mode := range []string{"static", "dhcp"} {
		t.Run(mode, func(t *testing.T) {
			root := t.TempDir()
			n := cluster.Node{Network: cluster.Network{Mode: mode}}
			if mode == "static" {
				n.Network.Address = "10.79.3.11/24"
				n.Members = []cluster.Member{{Name: "a", Address: "10.79.3.11"}, {Name: "b", Address: "10.79.3.12"}}
			}
			conf := overlayRules(t, root, n)
			if out, err := h["node"].Run(ctx, "nft", "-c", "-f", conf); err != nil {
				t.Fatalf("nft -c -f %s: %v\n%s", NftablesConf, err, out)
			}
			fw := Firewall{Root: root}
			peers := []netip.Addr{netip.MustParseAddr("10.79.3.12"), netip.MustParseAddr("fd00::12"), netip.MustParseAddr("10.79.3.12")}
			if err := fw.UpdatePeers(ctx, peers); err != nil {
				t.Fatal(err)
			}
			if err := fw.UpdateLAN(ctx, []netip.Prefix{netip.MustParsePrefix("10.79.3.7/24"), netip.MustParsePrefix("fd00::/64")}); err != nil {
				t.Fatal(err)
			}
			// The set files alone (no table yet), then the whole ruleset.
			for _, f := range []string{PeersFile, LANFile, NftablesConf} {
				if out, err := h["node"].Run(ctx, "nft", "-c", "-f", filepath.Join(root, f)); err != nil {
					t.Errorf("nft -c -f %s: %v\n%s", f, err, out)
				}
			}
			if err := fw.UpdatePeers(ctx, nil); err != nil {
				t.Fatal(err)
			}
			if out, err := h["node"].Run(ctx, "nft", "-c", "-f", filepath.Join(root, PeersFile)); err != nil {
				t.Errorf("empty peers: nft -c -f: %v\n%s", err, out)
			}
		})
	}
}

func TestUpdateRejectsBadInput(t *testing.T) {
	fw := Firewall{Root: t.TempDir()}
	if err := fw.UpdatePeers(context.Background(), []netip.Addr{{}}); err == nil {
		t.Error("UpdatePeers took an invalid address")
	}
	if err := fw.UpdatePeers(context.Background(), []netip.Addr{netip.IPv4Unspecified()}); err == nil {
		t.Error("UpdatePeers took 0.0.0.0")
	}
	if err := fw.UpdateLAN(context.Background(), []netip.Prefix{{}}); err == nil {
		t.Error("UpdateLAN took an invalid prefix")
	}
}

// TestFirewallLab loads the ruleset on a node in a namespace LAN and
// checks it with real traffic from a peer and from a LAN host that is not
// a peer.
func TestFirewallLab(t *testing.T) {
	requireNft(t)
	l, h := lab(t, "node", "peer", "outsider")
	ctx := context.Background()
	node, peer, outsider := h["node"], h["peer"], h["outsider"]

	root := t.TempDir()
	conf := overlayRules(t, root, cluster.Node{Network: cluster.Network{Mode: "dhcp"}})
	if out, err := node.Run(ctx, "nft", "-f", conf); err != nil {
		t.Fatalf("load ruleset: %v\n%s", err, out)
	}
	fw := Firewall{Root: root, Load: true}
	if err := inNS(node.NS, func() error {
		if err := fw.UpdateLAN(ctx, []netip.Prefix{l.Subnet}); err != nil {
			return err
		}
		return fw.UpdatePeers(ctx, []netip.Addr{peer.Addr})
	}); err != nil {
		t.Fatal(err)
	}

	ports := []int{22, 443, 6443, 7373, 7380, 2379, 9100, 10250, 445, 2049, 12345}
	listen(t, node, ports)
	vrrp := listenRaw(t, node, 112)
	vxlan := listenUDP(t, node, 8472)

	tcpCases := []struct {
		from *netns.Host
		port int
		want bool
	}{
		{peer, 22, true}, {outsider, 22, true},
		{outsider, 443, true},
		{peer, 6443, true}, {outsider, 6443, true}, // kubectl from the LAN
		{peer, 7373, true}, {outsider, 7373, true}, // raft: on the LAN, its mutual TLS is the check
		{peer, 7380, true}, {outsider, 7380, false}, // status
		{peer, 2379, true}, {outsider, 2379, false}, // etcd
		{peer, 9100, true}, {outsider, 9100, false}, // node-exporter, for Prometheus on another node
		{peer, 10250, true}, {outsider, 10250, false}, // kubelet
		{outsider, 445, true}, {outsider, 2049, true}, // NAS on the LAN
		{peer, 12345, false}, {outsider, 12345, false}, // nothing listens here by policy
	}
	checkTCP := func(t *testing.T, cases []struct {
		from *netns.Host
		port int
		want bool
	}) {
		var wg sync.WaitGroup
		for _, c := range cases {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := dial(c.from, node.Addr, c.port)
				if c.want && err != nil {
					t.Errorf("%s → node:%d: %v, want a connection", c.from.Name, c.port, err)
				}
				if !c.want && !isTimeout(err) {
					t.Errorf("%s → node:%d: %v, want silence (dropped)", c.from.Name, c.port, err)
				}
			}()
		}
		wg.Wait()
	}
	t.Run("tcp", func(t *testing.T) { checkTCP(t, tcpCases) })

	t.Run("vrrp and vxlan from peers only", func(t *testing.T) {
		for _, from := range []*netns.Host{peer, outsider} {
			if err := send(from, "ip4:112", node.Addr, 0, from.Name); err != nil {
				t.Fatal(err)
			}
			if err := send(from, "udp4", node.Addr, 8472, from.Name); err != nil {
				t.Fatal(err)
			}
		}
		for name, got := range map[string]<-chan string{"VRRP": vrrp, "VXLAN": vxlan} {
			seen := collect(got)
			if !seen[peer.Name] || seen[outsider.Name] {
				t.Errorf("%s reached the node from %v, want from the peer only", name, seen)
			}
		}
	})

	t.Run("replies to the node's own connections", func(t *testing.T) {
		listen(t, outsider, []int{8080})
		if err := dial(node, outsider.Addr, 8080); err != nil {
			t.Errorf("node → outsider:8080: %v: the reply was dropped", err)
		}
	})

	t.Run("peers replaced", func(t *testing.T) {
		if err := inNS(node.NS, func() error { return fw.UpdatePeers(ctx, []netip.Addr{outsider.Addr}) }); err != nil {
			t.Fatal(err)
		}
		checkTCP(t, []struct {
			from *netns.Host
			port int
			want bool
		}{{outsider, 7380, true}, {peer, 7380, false}, {peer, 22, true}})
	})

	t.Run("drops counted", func(t *testing.T) {
		out, err := node.Run(ctx, "nft", "list", "chain", "inet", "homecloud", "input")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, `comment "dropped"`) || strings.Contains(out, `counter packets 0 bytes 0 comment "dropped"`) {
			t.Errorf("drop counter did not count:\n%s", out)
		}
	})
}

func listen(t *testing.T, h *netns.Host, ports []int) {
	t.Helper()
	for _, p := range ports {
		var ln net.Listener
		if err := inNS(h.NS, func() (err error) {
			ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", p))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("hi"))
				c.Close()
			}
		}()
	}
}

// dial connects from a host and reads the listener's greeting.
func dial(from *netns.Host, to netip.Addr, port int) error {
	return inNS(from.NS, func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(to, uint16(port)).String(), dropWait)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(dropWait))
		b := make([]byte, 2)
		if _, err := c.Read(b); err != nil {
			return err
		}
		if string(b) != "hi" {
			return fmt.Errorf("read %q", b)
		}
		return nil
	})
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// listenRaw receives one IP protocol on h and reports each payload.
func listenRaw(t *testing.T, h *netns.Host, proto int) <-chan string {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(h.NS, func() (err error) {
		pc, err = net.ListenPacket(fmt.Sprintf("ip4:%d", proto), "0.0.0.0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return serve(t, pc)
}

func listenUDP(t *testing.T, h *netns.Host, port int) <-chan string {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(h.NS, func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return serve(t, pc)
}

func serve(t *testing.T, pc net.PacketConn) <-chan string {
	t.Cleanup(func() { pc.Close() })
	ch := make(chan string, 64)
	go func() {
		b := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(b)
			if err != nil {
				close(ch)
				return
			}
			select {
			case ch <- string(b[:n]):
			default:
			}
		}
	}()
	return ch
}

// send sends three datagrams carrying the sender's name (a bounded burst:
// one could be lost to a neighbour lookup).
func send(from *netns.Host, network string, to netip.Addr, port int, payload string) error {
	return inNS(from.NS, func() error {
		addr := to.String()
		if port != 0 {
			addr = netip.AddrPortFrom(to, uint16(port)).String()
		}
		c, err := net.Dial(network, addr)
		if err != nil {
			return err
		}
		defer c.Close()
		for range 3 {
			if _, err := c.Write([]byte(payload)); err != nil {
				return err
			}
		}
		return nil
	})
}

// collect gathers what arrived until nothing more comes for dropWait.
func collect(ch <-chan string) map[string]bool {
	seen := map[string]bool{}
	for {
		select {
		case s, ok := <-ch:
			if !ok {
				return seen
			}
			seen[s] = true
		case <-time.After(dropWait):
			return seen
		}
	}
}
