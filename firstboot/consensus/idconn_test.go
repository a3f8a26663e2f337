package consensus

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// rpcStream encodes RPCs as NetworkTransport writes them.
func rpcStream(t *testing.T, rpcs ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	//lint:ignore SA1019 hashicorp/raft's NetworkTransport configures its encoder so
	enc := codec.NewEncoder(&b, &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}})
	for _, r := range rpcs {
		switch r := r.(type) {
		case []byte: // a snapshot's bytes
			b.Write(r)
			continue
		case *raft.AppendEntriesRequest:
			b.WriteByte(rpcAppendEntries)
		case *raft.RequestVoteRequest:
			b.WriteByte(rpcRequestVote)
		case *raft.InstallSnapshotRequest:
			b.WriteByte(rpcInstallSnapshot)
		case *raft.TimeoutNowRequest:
			b.WriteByte(rpcTimeoutNow)
		case *raft.RequestPreVoteRequest:
			b.WriteByte(rpcRequestPreVote)
		}
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// Raft must read, byte for byte, what the peer sent when every RPC speaks
// for the certificate's name, snapshots' raw bytes included.
func TestIDConnPassesItsOwnRPCs(t *testing.T) {
	h := func() raft.RPCHeader {
		return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("node2"), Addr: []byte("10.0.0.2:7373")}
	}
	snap := bytes.Repeat([]byte{0xc1, 0, 0xff, 7}, 5000) // 0xc1 is never valid msgpack
	stream := rpcStream(t,
		&raft.AppendEntriesRequest{RPCHeader: h(), Term: 3, Entries: []*raft.Log{{Index: 4, Term: 3, Data: []byte("plan"), AppendedAt: time.Unix(1e9, 5)}}},
		&raft.RequestVoteRequest{RPCHeader: h(), Term: 4, LastLogIndex: 4},
		&raft.InstallSnapshotRequest{RPCHeader: h(), Term: 4, Size: int64(len(snap)), Peers: []byte("x")}, snap,
		&raft.RequestPreVoteRequest{RPCHeader: h(), Term: 5},
		&raft.TimeoutNowRequest{RPCHeader: h()},
		&raft.AppendEntriesRequest{RPCHeader: h(), Term: 5},
	)
	c := &idConn{name: "node2", src: bufio.NewReader(bytes.NewReader(stream))}
	got, err := io.ReadAll(oddReads{c})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, stream) {
		t.Fatalf("raft read %d bytes, the peer sent %d (or other bytes)", len(got), len(stream))
	}
}

func TestIDConnRefusesOthersRPCs(t *testing.T) {
	own := raft.RPCHeader{ID: []byte("node2")}
	other := raft.RPCHeader{ID: []byte("node3")}
	stream := rpcStream(t, &raft.AppendEntriesRequest{RPCHeader: own, Term: 3}, &raft.AppendEntriesRequest{RPCHeader: other, Term: 9})
	first := rpcStream(t, &raft.AppendEntriesRequest{RPCHeader: own, Term: 3})
	var logged []error
	c := &idConn{name: "node2", src: bufio.NewReader(bytes.NewReader(stream)), log: func(err error) { logged = append(logged, err) }}
	got, err := io.ReadAll(c)
	if err == nil || !strings.Contains(err.Error(), `claims to come from "node3"`) {
		t.Fatalf("error %v, want the claim named", err)
	}
	if !bytes.Equal(got, first) {
		t.Fatalf("raft read %d bytes, want only the first RPC's %d", len(got), len(first))
	}
	if len(logged) != 1 {
		t.Errorf("logged %v, want the refusal once", logged)
	}
}

// oddReads reads in odd sizes, as bufio and the decoder do.
type oddReads struct{ r io.Reader }

func (o oddReads) Read(p []byte) (int, error) {
	if len(p) > 7 {
		p = p[:7]
	}
	return o.r.Read(p)
}
