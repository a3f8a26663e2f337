package consensus

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// idConn ties an incoming raft connection to the name on the peer's
// certificate: raft trusts the server ID in each RPC's header (whose
// AppendEntries it follows, whom it votes for), and the TLS handshake only
// proved that the peer holds some certificate of the cluster. Each RPC is
// read and decoded here before raft sees a byte of it, and one whose
// header names another server ends the connection.
//
// The wire format is hashicorp/raft's NetworkTransport's: a type byte, the
// msgpack-encoded request, and for InstallSnapshot the snapshot's bytes.
type idConn struct {
	net.Conn        // writes (responses) pass through
	name     string // the certificate's common name: the raft server ID
	src      *bufio.Reader
	pending  bytes.Buffer // checked bytes raft has not read yet
	raw      int64        // snapshot bytes to pass on after an InstallSnapshot
	err      error
	log      func(error)
}

func newIDConn(c net.Conn, name string, log func(error)) *idConn {
	return &idConn{Conn: c, name: name, src: bufio.NewReader(c), log: log}
}

func (c *idConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for c.pending.Len() == 0 {
		if c.raw > 0 {
			n, err := c.src.Read(p[:min(int64(len(p)), c.raw)])
			c.raw -= int64(n)
			return n, err
		}
		if c.err != nil {
			return 0, c.err
		}
		c.err = c.next()
	}
	return c.pending.Read(p)
}

// RPC types of hashicorp/raft's NetworkTransport (unexported there).
const (
	rpcAppendEntries uint8 = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
)

// next reads, decodes and checks one RPC into pending.
func (c *idConn) next() error {
	rec := &recorder{r: c.src}
	t, err := rec.ReadByte()
	if err != nil {
		return err
	}
	var req raft.WithRPCHeader
	switch t {
	case rpcAppendEntries:
		req = &raft.AppendEntriesRequest{}
	case rpcRequestVote:
		req = &raft.RequestVoteRequest{}
	case rpcInstallSnapshot:
		req = &raft.InstallSnapshotRequest{}
	case rpcTimeoutNow:
		req = &raft.TimeoutNowRequest{}
	case rpcRequestPreVote:
		req = &raft.RequestPreVoteRequest{}
	default:
		return c.refuse(fmt.Errorf("raft RPC of unknown type %d from %s", t, c.name))
	}
	if err := codec.NewDecoder(rec, &codec.MsgpackHandle{}).Decode(req); err != nil {
		return fmt.Errorf("decode raft RPC from %s: %w", c.name, err)
	}
	if id := string(req.GetRPCHeader().ID); id != c.name {
		return c.refuse(fmt.Errorf("raft RPC from %s (by its certificate) claims to come from %q", c.name, id))
	}
	if s, ok := req.(*raft.InstallSnapshotRequest); ok {
		c.raw = s.Size
	}
	c.pending.Write(rec.buf)
	return nil
}

func (c *idConn) refuse(err error) error {
	if c.log != nil {
		c.log(err)
	}
	return err
}

// recorder keeps the bytes a decoder consumes: it is an io.ByteScanner,
// so the decoder reads exactly the object and gives back what it peeked.
type recorder struct {
	r   *bufio.Reader
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

func (r *recorder) ReadByte() (byte, error) {
	b, err := r.r.ReadByte()
	if err == nil {
		r.buf = append(r.buf, b)
	}
	return b, err
}

func (r *recorder) UnreadByte() error {
	if err := r.r.UnreadByte(); err != nil {
		return err
	}
	r.buf = r.buf[:len(r.buf)-1]
	return nil
}

var _ io.ByteScanner = (*recorder)(nil)
