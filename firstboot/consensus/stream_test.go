package consensus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/homecloud/homecloud/internal/cluster"
)

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// rawTransport is a raft transport with no raft behind it: a client that
// speaks the wire protocol with whatever identity it is given.
func rawTransport(t *testing.T, id *cluster.Identity) *raft.NetworkTransport {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newStreamLayer(ln, ln.Addr().String(), id, 2*time.Second, testLogger(t))
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: s, MaxPool: 1, Timeout: 2 * time.Second, Logger: newHCLog(testLogger(t))})
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestStreamLayerRefusesForeignCA(t *testing.T) {
	h := newHarness(t)
	h.start(1)
	ctx := ctxT(t, 10*time.Second)
	target := h.leader(ctx)

	rogueCA := newCA(t, "rogue")
	tests := []struct {
		name   string
		id     *cluster.Identity
		wantOK bool
	}{
		{"member certificate", newIdentity(t, h.ca, h.ca, "node2"), true},
		// Trusts the cluster CA (so it accepts the server) but its own
		// certificate is foreign: the server must refuse it.
		{"foreign client certificate", foreignLeafTrustingCA(t, rogueCA, h.ca, "node2"), false},
		{"foreign CA throughout", newIdentity(t, rogueCA, rogueCA, "node2"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := rawTransport(t, tt.id)
			// Term 0 is stale: a member gets a refusal, not a vote, and the
			// leader is not disturbed.
			req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("node2"), Addr: []byte(tr.LocalAddr())}, Term: 0}
			var resp raft.RequestVoteResponse
			err := tr.RequestVote(raft.ServerID(target.ID()), raft.ServerAddress(target.Addr()), req, &resp)
			if tt.wantOK && err != nil {
				t.Fatalf("RequestVote with a member certificate: %v", err)
			}
			if !tt.wantOK && err == nil {
				t.Fatalf("RequestVote got through with a foreign certificate (response %+v)", resp)
			}
			if tt.wantOK && resp.Term == 0 {
				t.Fatalf("response term 0: the RPC did not reach raft")
			}
		})
	}
}

// A member's certificate speaks for that member only: raft trusts the ID
// in each RPC's header (whom it follows, whom it votes for), so an RPC
// whose header names another server must not reach it, whatever its type.
func TestRPCSpeaksOnlyForItsCertificate(t *testing.T) {
	h := newHarness(t)
	h.start(1)
	ctx := ctxT(t, 10*time.Second)
	target := h.leader(ctx)
	tr := rawTransport(t, newIdentity(t, h.ca, h.ca, "node2"))
	header := func(id string) raft.RPCHeader {
		return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(tr.LocalAddr())}
	}
	to, addr := raft.ServerID(target.ID()), raft.ServerAddress(target.Addr())
	// Term 0 is stale: what gets through is refused by raft, not obeyed.
	rpcs := map[string]func(id string) (term uint64, err error){
		"RequestVote": func(id string) (uint64, error) {
			var resp raft.RequestVoteResponse
			err := tr.RequestVote(to, addr, &raft.RequestVoteRequest{RPCHeader: header(id)}, &resp)
			return resp.Term, err
		},
		"AppendEntries": func(id string) (uint64, error) {
			var resp raft.AppendEntriesResponse
			err := tr.AppendEntries(to, addr, &raft.AppendEntriesRequest{RPCHeader: header(id), Entries: []*raft.Log{{Index: 1, Term: 0}}}, &resp)
			return resp.Term, err
		},
		"RequestPreVote": func(id string) (uint64, error) {
			var resp raft.RequestPreVoteResponse
			err := tr.RequestPreVote(to, addr, &raft.RequestPreVoteRequest{RPCHeader: header(id)}, &resp)
			return resp.Term, err
		},
		"TimeoutNow": func(id string) (uint64, error) {
			var resp raft.TimeoutNowResponse
			err := tr.TimeoutNow(to, addr, &raft.TimeoutNowRequest{RPCHeader: header(id)}, &resp)
			return 0, err
		},
	}
	for name, call := range rpcs {
		t.Run(name, func(t *testing.T) {
			if name != "TimeoutNow" { // obeyed whatever its term: not sent as ourselves
				if term, err := call("node2"); err != nil || term == 0 {
					t.Fatalf("as itself: term %d, %v; want raft's answer", term, err)
				}
			}
			before := target.RefusedHandshakes()
			if _, err := call("node3"); err == nil {
				t.Fatal("an RPC claiming to be node3 over node2's certificate reached raft")
			}
			if target.RefusedHandshakes() == before {
				t.Error("the refused RPC was not counted")
			}
		})
	}
	if !target.IsLeader() {
		t.Error("the target lost its leadership")
	}
}

// foreignLeafTrustingCA is an identity LoadIdentity would refuse: a leaf
// from signer that nonetheless trusts (and so accepts servers of) trust.
func foreignLeafTrustingCA(t *testing.T, signer, trust *cluster.CA, name string) *cluster.Identity {
	t.Helper()
	c, k, err := signer.Issue(name, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return &cluster.Identity{CA: trust.Cert, Cert: pair, Leaf: leaf}
}

func TestStreamLayerSlowClientDoesNotBlock(t *testing.T) {
	h := newHarness(t)
	// A connection that never speaks TLS must not hold up the others.
	n := h.open(1, "127.0.0.1:0")
	silent, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	ctx := ctxT(t, 3*time.Second)
	if err := n.VerifyPeer(ctx, n.Addr(), "node1", cluster.Fingerprint(h.ids["node1"].Leaf)); err != nil {
		t.Fatalf("VerifyPeer while another connection stalls: %v", err)
	}
}

func TestVerifyPeer(t *testing.T) {
	h := newHarness(t)
	n := h.open(1, "127.0.0.1:0")
	fp := cluster.Fingerprint(h.ids["node1"].Leaf)
	tests := []struct {
		name, addr, wantName, fp, err string
	}{
		{"genuine", n.Addr(), "node1", fp, ""},
		{"other name", n.Addr(), "node2", fp, `certificate names "node1"`},
		{"other fingerprint", n.Addr(), "node1", strings.Repeat("ab", 32), "fingerprint"},
		{"no fingerprint", n.Addr(), "node1", "", "lacks"},
		{"nothing listening", closedPort(t), "node1", fp, "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			err := n.VerifyPeer(ctx, tt.addr, tt.wantName, tt.fp)
			if tt.err == "" && err != nil {
				t.Fatalf("VerifyPeer: %v", err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("VerifyPeer = %v, want an error containing %q", err, tt.err)
			}
		})
	}

	// A server with a foreign certificate fails the chain check.
	rogueCA := newCA(t, "rogue")
	rogueID := newIdentity(t, rogueCA, rogueCA, "node1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newStreamLayer(ln, ln.Addr().String(), rogueID, time.Second, testLogger(t))
	t.Cleanup(func() { s.Close() })
	ctx := ctxT(t, 3*time.Second)
	err = n.VerifyPeer(ctx, ln.Addr().String(), "node1", cluster.Fingerprint(rogueID.Leaf))
	if err == nil || !strings.Contains(err.Error(), "not from the cluster CA") {
		t.Fatalf("VerifyPeer(foreign server) = %v, want a CA error", err)
	}
}

// Raft's port is open to the LAN: a device that opens connection after
// connection and never finishes a handshake gets a few slots, the rest
// are closed at once, and a member still gets through meanwhile.
func TestStreamLayerBoundsHandshakes(t *testing.T) {
	h := newHarness(t)
	n := h.open(1, "127.0.0.1:0")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	var held, closed int
	for range 3 * maxHandshakesPerSource {
		c, err := d.Dial("tcp", n.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A refused connection is closed by the server right away; an
		// admitted one waits for a ClientHello that never comes.
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			held++
		} else {
			closed++
		}
	}
	if held != maxHandshakesPerSource || closed != 2*maxHandshakesPerSource {
		t.Errorf("one source: %d connections held, %d closed; want %d held", held, closed, maxHandshakesPerSource)
	}
	ctx := ctxT(t, 3*time.Second)
	if err := n.VerifyPeer(ctx, n.Addr(), "node1", cluster.Fingerprint(h.ids["node1"].Leaf)); err != nil {
		t.Fatalf("a member's handshake while a stranger holds its slots: %v", err)
	}
}
