package k3s

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/internal/fakek3s"
)

// loopback picks a random 127/8 address so the fake's :6443 collides with
// nothing else on the machine.
func loopback() netip.Addr {
	b := make([]byte, 3)
	rand.Read(b)
	return netip.AddrFrom4([4]byte{127, b[0] | 1, b[1], b[2]&0xfe | 2})
}

// runFake runs the k3s double in-process on a node whose root is root.
func runFake(t *testing.T, role string, root string, delay time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var log lockedBuffer
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
		err := fakek3s.Run(ctx, []string{role, "--config", filepath.Join(root, ConfigPath)}, func(string) string { return "" }, &log)
		if err != nil {
			t.Errorf("fake k3s %s: %v", role, err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("fake k3s %s log:\n%s", role, log.String())
		}
	})
}

func TestWaitReadyAgainstFakeK3s(t *testing.T) {
	srvRoot, agentRoot := t.TempDir(), t.TempDir()
	init := Node{"node1", loopback()}
	for root, self := range map[string]Node{srvRoot: init, agentRoot: {"node4", loopback()}} {
		// A plain token: the fake checks a K10 token's hash against its CA.
		p := Params{Self: self, Servers: []Node{init}, InitServer: "node1", Token: "plain-secret", DataDir: filepath.Join(root, DataDir)}
		if _, err := WriteConfig(root, p); err != nil {
			t.Fatal(err)
		}
	}
	// Made before k3s has written any certificate: it must pick them up later.
	srvTLS, err := ReadyTLS(srvRoot)
	if err != nil {
		t.Fatal(err)
	}
	runFake(t, "server", srvRoot, 300*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := WaitReady(ctx, ReadyzURL(init.Addr), srvTLS); err != nil {
		t.Fatalf("server with k3s' admin certificate: %v", err)
	}

	t.Run("anonymous is refused like k3s does", func(t *testing.T) {
		ca, err := os.ReadFile(filepath.Join(srvRoot, ServerTLSDir, "server-ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		anon := &tls.Config{RootCAs: pool}
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err = WaitReady(short, ReadyzURL(init.Addr), anon)
		if err == nil || !strings.Contains(err.Error(), "401") {
			t.Fatalf("WaitReady without a client certificate = %v; want a 401 timeout", err)
		}
		if err := WaitAnswering(ctx, ReadyzURL(init.Addr), anon); err != nil {
			t.Fatalf("WaitAnswering: %v", err)
		}
	})

	t.Run("agent waits for the init server with the CA it saved", func(t *testing.T) {
		agentTLS, err := ReadyTLS(agentRoot)
		if err != nil {
			t.Fatal(err)
		}
		runFake(t, "agent", agentRoot, 0)
		if err := WaitAnswering(ctx, ReadyzURL(init.Addr), agentTLS); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a foreign CA is not trusted", func(t *testing.T) {
		root := t.TempDir()
		ca, err := cluster.NewCA("not-k3s", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(root, AgentDir, "server-ca.crt")
		os.MkdirAll(filepath.Dir(f), 0o755)
		os.WriteFile(f, ca.CertPEM(), 0o644)
		foreign, _ := ReadyTLS(root)
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err = WaitAnswering(short, ReadyzURL(init.Addr), foreign)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("WaitAnswering with a foreign CA = %v; want a certificate error", err)
		}
	})
}

func TestReadyTLSMissingRoot(t *testing.T) {
	if _, err := ReadyTLS(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("ReadyTLS(missing root) = nil error")
	}
}

// lockedBuffer collects the fake's log, which its server goroutines share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
