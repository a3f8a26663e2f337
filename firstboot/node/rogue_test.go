package node_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/homecloud/homecloud/firstboot/discovery"
	"github.com/homecloud/homecloud/firstboot/harden"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/internal/clustertest"
)

// rogueMain runs inside a lab namespace as a device that is not part of the
// cluster: it holds a certificate from another CA, announces itself with
// the cluster's id, announces a fake member pointing at a real node, and
// tries to speak TLS to a real node's raft port.
func rogueMain() {
	clusterID, self, victim := os.Getenv("ROGUE_CLUSTER_ID"), os.Getenv("ROGUE_ADDR"), os.Getenv("ROGUE_VICTIM")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ca, err := cluster.NewCA("rogue", time.Now())
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	certPEM, keyPEM, _ := ca.Issue("home-node9", []net.IP{net.ParseIP(self)}, time.Now())
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	ln, err := tls.Listen("tcp", net.JoinHostPort(self, "7373"), &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); time.Sleep(time.Second); c.Close() }()
		}
	}()
	fp := make([]byte, 32)
	rand.Read(fp)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	// A status page that claims the VIP for the rogue.
	go http.ListenAndServe(net.JoinHostPort(self, "7380"), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"node":"home-node0","step":"serve","holds_vip":true}`)
	}))
	infos := []discovery.Info{
		{ClusterID: clusterID, Name: "home-node9", RaftAddr: net.JoinHostPort(self, "7373"), Fingerprint: cluster.Fingerprint(leaf), State: discovery.StateNew},
		// Named to be asked before the real nodes.
		{ClusterID: clusterID, Name: "home-node0", RaftAddr: net.JoinHostPort(self, "7373"), Fingerprint: cluster.Fingerprint(leaf), State: discovery.StateMember,
			StatusAddr: net.JoinHostPort(self, "7380")},
		{ClusterID: clusterID, Name: "home-node8", RaftAddr: net.JoinHostPort(victim, "7373"), Fingerprint: hex.EncodeToString(fp), State: discovery.StateMember},
	}
	// A flood of nodes at addresses where nothing answers: each handshake
	// with them can only time out.
	silent := netip.MustParseAddr(victim).As4()
	for i := range 20 {
		silent[3] = byte(200 + i)
		infos = append(infos, discovery.Info{ClusterID: clusterID, Name: fmt.Sprintf("home-node%d", 20+i),
			RaftAddr: net.JoinHostPort(netip.AddrFrom4(silent).String(), "7373"), Fingerprint: hex.EncodeToString(fp), State: discovery.StateNew})
	}
	for _, info := range infos {
		if _, err := discovery.Announce(ctx, discovery.Config{Interfaces: []string{"eth0"}, Instance: info.Name}, info); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	// Claim every real node's name at the rogue's address, changed again
	// and again, so that each claim is nearly always the newest a browse
	// reported for its name (the newest won before every claim was kept).
	go func() {
		var shadows []*discovery.Announcer
		var infos []discovery.Info
		for _, name := range strings.Split(os.Getenv("ROGUE_SHADOW"), ",") {
			info := discovery.Info{ClusterID: clusterID, Name: name, RaftAddr: net.JoinHostPort(self, "7373"),
				Fingerprint: cluster.Fingerprint(leaf), State: discovery.StateNew}
			a, err := discovery.Announce(ctx, discovery.Config{Interfaces: []string{"eth0"}, Instance: name + "-shadow"}, info)
			if err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			shadows, infos = append(shadows, a), append(infos, info)
		}
		for ctx.Err() == nil {
			time.Sleep(300 * time.Millisecond)
			for i, a := range shadows {
				if infos[i].State == discovery.StateNew {
					infos[i].State = discovery.StateMember
				} else {
					infos[i].State = discovery.StateNew
				}
				a.Update(infos[i])
			}
		}
	}()
	// Knock on the victim's raft port with the foreign certificate.
	for ctx.Err() == nil {
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: time.Second}, Config: &tls.Config{Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(victim, "7373"))
		if err == nil {
			// TLS 1.3 reports a refused client certificate on first read.
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
			if err != nil && !strings.Contains(err.Error(), "timeout") {
				fmt.Println("refused", err)
			} else {
				fmt.Println("accepted")
			}
		}
		time.Sleep(time.Second)
	}
}

func TestRogueNeverJoins(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rh, err := c.Lab.AddHost(ctx, "rogue")
	if err != nil {
		t.Fatal(err)
	}
	cmd := rh.Command(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HOMECLOUD_ROGUE=1", "ROGUE_CLUSTER_ID="+clusterID(t, c), "ROGUE_ADDR="+rh.Addr.String(), "ROGUE_VICTIM="+c.Nodes[0].Host.Addr.String(),
		"ROGUE_SHADOW="+strings.Join(nodeNames(c), ","))
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	for _, n := range c.Nodes {
		if err := n.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// Twenty silent announcements cost 60 s a round if proved one by one
	// without memory: the cluster must form about as fast as without them
	// (≈ 20 s here, 85 s before they were proved at once and remembered).
	views := serving(t, c, 60*time.Second)
	agreed(t, views)
	time.Sleep(3 * time.Second) // a few leader reconcile rounds with the rogue in sight
	views = serving(t, c, 30*time.Second)
	for name, v := range views {
		if len(v.Members) != 3 {
			t.Errorf("%s: %d members: %+v", name, len(v.Members), v.Members)
		}
		for _, m := range v.Members {
			if m.ID == "home-node8" || m.ID == "home-node9" || m.ID == "home-node0" {
				t.Errorf("%s lets rogue %s into the raft membership", name, m.ID)
			}
		}
	}
	// An announcement proves nothing: the rogue must not get into the
	// firewall's peer sets (flannel, VRRP, kubelet, etcd), while every
	// real node is there.
	for _, n := range c.Nodes {
		b, err := os.ReadFile(filepath.Join(n.Root, harden.PeersFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), rh.Addr.String()) {
			t.Errorf("%s's firewall lets the rogue in as a peer:\n%s", n.Name, b)
		}
		for _, o := range c.Nodes {
			if o != n && !strings.Contains(string(b), o.Host.Addr.String()) {
				t.Errorf("%s's firewall peers lack %s:\n%s", n.Name, o.Name, b)
			}
		}
	}
	// The rogue's status page claims the VIP: no node may believe it.
	for name, v := range serving(t, c, 30*time.Second) {
		if v.VIPHolder == "home-node0" {
			t.Errorf("%s reports the rogue as the VIP holder", name)
		}
	}
	refused := false
	timeout := time.After(10 * time.Second)
	for !refused {
		select {
		case l := <-lines:
			if strings.HasPrefix(l, "accepted") {
				t.Fatalf("a real node accepted the rogue's foreign certificate")
			}
			if strings.HasPrefix(l, "error") {
				t.Fatalf("rogue: %s", l)
			}
			refused = strings.HasPrefix(l, "refused")
		case <-timeout:
			t.Fatal("the rogue never reported a refused handshake")
		}
	}
}

func nodeNames(c *clustertest.Cluster) []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Name)
	}
	return out
}
