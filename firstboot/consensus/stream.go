package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/homecloud/homecloud/internal/cluster"
)

// streamLayer carries raft RPCs over TLS 1.3 with mutual authentication:
// both ends present a certificate from the cluster CA, so a board without
// the CA cannot read, write or vote in the log.
type streamLayer struct {
	ln        net.Listener // plain TCP; handshakes happen off the accept loop
	advertise net.Addr
	server    *tls.Config
	client    *tls.Config
	timeout   time.Duration // bound on every handshake
	log       *slog.Logger

	refused   atomic.Int64  // handshakes that failed: foreign certificates, scanners
	slots     chan struct{} // handshakes in flight, at most maxHandshakes
	mu        sync.Mutex
	bySource  map[string]int // handshakes in flight per remote address
	lastLog   time.Time      // of a refusal: a flood must not flood the journal too
	quiet     int            // refusals not logged since lastLog
	conns     chan net.Conn
	ctx       context.Context // cancelled by Close: ends pending handshakes
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

type tcpAddr string

func (a tcpAddr) Network() string { return "tcp" }
func (a tcpAddr) String() string  { return string(a) }

func newStreamLayer(ln net.Listener, advertise string, id *cluster.Identity, timeout time.Duration, log *slog.Logger) *streamLayer {
	s := &streamLayer{
		ln:        ln,
		advertise: tcpAddr(advertise),
		server:    id.ServerTLS(),
		client:    id.ClientTLS(),
		timeout:   timeout,
		log:       log,
		conns:     make(chan net.Conn),
		done:      make(chan struct{}),
		slots:     make(chan struct{}, maxHandshakes),
		bySource:  map[string]int{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.acceptLoop()
	return s
}

// Raft's port is open to the LAN (its mutual TLS is the check), so what a
// stranger's connection costs before it fails the handshake is bounded: a
// goroutine and a buffered ClientHello (~176 KiB for a 64 KiB one) until
// the timeout. maxHandshakes of them at most, and few per remote address,
// so one device cannot take every slot from the members.
const (
	maxHandshakes          = 64
	maxHandshakesPerSource = 8
)

// acceptLoop hands each raw connection to its own handshake so one peer
// that connects and says nothing cannot hold up the others.
func (s *streamLayer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("raft listener accept failed", "error", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.done:
				return
			}
			continue
		}
		source := remoteHost(c)
		if !s.admit(source) {
			s.refuse(c, errors.New("too many handshakes in flight"))
			continue
		}
		s.wg.Add(1)
		go s.handshake(c, source)
	}
}

func remoteHost(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// admit takes a handshake slot for source, if one is free.
func (s *streamLayer) admit(source string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bySource[source] >= maxHandshakesPerSource {
		return false
	}
	select {
	case s.slots <- struct{}{}:
	default:
		return false
	}
	s.bySource[source]++
	return true
}

func (s *streamLayer) release(source string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	<-s.slots
	if s.bySource[source]--; s.bySource[source] <= 0 {
		delete(s.bySource, source)
	}
}

// refuse closes c and logs it, at most once a second with a count of the
// refusals in between.
func (s *streamLayer) refuse(c net.Conn, err error) {
	c.Close()
	s.logRefusal(c.RemoteAddr().String(), err)
}

// logRefusal counts a refused connection (or RPC) and logs it, at most
// once a second.
func (s *streamLayer) logRefusal(remote string, err error) {
	s.refused.Add(1)
	s.mu.Lock()
	if time.Since(s.lastLog) < time.Second {
		s.quiet++
		s.mu.Unlock()
		return
	}
	quiet := s.quiet
	s.lastLog, s.quiet = time.Now(), 0
	s.mu.Unlock()
	s.log.Warn("refused raft connection", "remote", remote, "error", err, "refused_unlogged", quiet)
}

func (s *streamLayer) handshake(c net.Conn, source string) {
	defer s.wg.Done()
	defer s.release(source)
	tc := tls.Server(c, s.server)
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		s.refuse(c, err)
		return
	}
	// ServerTLS requires and verifies a client certificate: there is one.
	name := tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	ic := newIDConn(tc, name, func(err error) { s.logRefusal(c.RemoteAddr().String(), err) })
	select {
	case s.conns <- ic:
	case <-s.done:
		tc.Close()
	}
}

// Accept returns connections whose handshake succeeded: the peer proved it
// holds a certificate from the cluster CA, and its RPCs may speak only for
// the name on it (idConn).
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *streamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		s.cancel()
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

// Addr is the advertised address: the one the other members dial.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a member and completes the handshake within timeout,
// refusing a server whose certificate the cluster CA did not sign.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: s.client}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
	}
	return c, nil
}

// VerifyPeer dials addr and checks, in a TLS handshake, that the server
// there holds a certificate from the cluster CA whose common name is
// wantName and whose fingerprint (cluster.Fingerprint) is wantFingerprint.
// An mDNS announcement is only a claim; this turns it into a proof before
// the announced node may enter the raft membership.
func VerifyPeer(ctx context.Context, id *cluster.Identity, addr, wantName, wantFingerprint string) error {
	if wantName == "" || wantFingerprint == "" {
		return fmt.Errorf("verify peer at %s: announcement lacks a name or a certificate fingerprint", addr)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultHandshakeTimeout)
		defer cancel()
	}
	d := tls.Dialer{Config: id.ClientTLS()}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("verify peer %s at %s: %w", wantName, addr, err)
	}
	defer c.Close()
	certs := c.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return fmt.Errorf("verify peer %s at %s: no certificate", wantName, addr)
	}
	if cn := certs[0].Subject.CommonName; cn != wantName {
		return fmt.Errorf("verify peer at %s: announced as %q but its certificate names %q", addr, wantName, cn)
	}
	if fp := cluster.Fingerprint(certs[0]); fp != wantFingerprint {
		return fmt.Errorf("verify peer %s at %s: certificate fingerprint %s, announced %s", wantName, addr, fp, wantFingerprint)
	}
	return nil
}
