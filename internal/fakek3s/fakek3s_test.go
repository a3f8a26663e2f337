package fakek3s

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/homecloud/homecloud/internal/cluster"
)

func loopback() string {
	b := make([]byte, 3)
	rand.Read(b)
	return fmt.Sprintf("127.%d.%d.%d", b[0]|1, b[1], b[2]&0xfe|2)
}

// buildFake builds cmd/fake-k3s once for the test.
func buildFake(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH: cannot build cmd/fake-k3s")
	}
	bin := filepath.Join(t.TempDir(), "fake-k3s")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/homecloud/homecloud/cmd/fake-k3s").CombinedOutput()
	if err != nil {
		t.Fatalf("build fake-k3s: %v\n%s", err, out)
	}
	return bin
}

type node struct {
	root, config, dataDir string
}

func newNode(t *testing.T, yaml string) node {
	root := t.TempDir()
	n := node{root: root, config: filepath.Join(root, "etc/rancher/k3s/config.yaml"), dataDir: filepath.Join(root, "var/lib/rancher/k3s")}
	os.MkdirAll(filepath.Dir(n.config), 0o755)
	if err := os.WriteFile(n.config, []byte(yaml+"data-dir: "+n.dataDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return n
}

// start runs the binary as the unit file would; cleanup stops it by PID.
func start(t *testing.T, bin, role string, n node) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, role, "--config", n.config)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited %v after SIGTERM; want 0", role, err)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Errorf("%s ignored SIGTERM", role)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", role, log.String())
		}
	})
	return cmd
}

func waitRecord(t *testing.T, n node) *Record {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if r, err := ReadRecord(n.config); err == nil {
			return r
		}
	}
	t.Fatalf("no record beside %s", n.config)
	return nil
}

func TestInitServerFirstOthersJoinAfter(t *testing.T) {
	bin := buildFake(t)
	// The builder pre-generates the server CA so a secure token pins it.
	ca, err := cluster.NewCA("k3s-server-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caKey, _ := ca.KeyPEM()
	sum := sha256.Sum256(ca.CertPEM())
	token := "K10" + hex.EncodeToString(sum[:]) + "::server:s3cret"
	initIP, joinIP, agentIP := loopback(), loopback(), loopback()
	url := "https://" + initIP + ":6443"
	init := newNode(t, "cluster-init: true\ntoken: "+token+"\nnode-name: node1\nnode-ip: "+initIP+"\ntls-san: [10.77.0.100]\ndisable: [traefik]\n")
	joiner := newNode(t, "server: "+url+"\ntoken: "+token+"\nnode-name: node2\nnode-ip: "+joinIP+"\netcd-arg:\n  - heartbeat-interval=500\n")
	agent := newNode(t, "server: "+url+"\ntoken: "+token+"\nnode-name: node4\nnode-ip: "+agentIP+"\n")
	for _, n := range []node{init, joiner} {
		dir := filepath.Join(n.dataDir, "server/tls")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "server-ca.crt"), ca.CertPEM(), 0o644)
		os.WriteFile(filepath.Join(dir, "server-ca.key"), caKey, 0o600)
	}

	start(t, bin, "server", joiner)
	start(t, bin, "agent", agent)
	time.Sleep(500 * time.Millisecond)
	for _, n := range []node{joiner, agent} {
		if _, err := ReadRecord(n.config); err == nil {
			t.Fatal("a node came up before the init server it joins")
		}
	}
	start(t, bin, "server", init)
	ri, rj, ra := waitRecord(t, init), waitRecord(t, joiner), waitRecord(t, agent)
	if !rj.Ready.After(ri.Ready) || !ra.Ready.After(ri.Ready) {
		t.Errorf("ready at init %v, joiner %v, agent %v: the others must follow init", ri.Ready, rj.Ready, ra.Ready)
	}
	if ri.Role != "server" || ri.Config["cluster-init"] != true || ri.Listen != net.JoinHostPort(initIP, "6443") {
		t.Errorf("init record: %+v", ri)
	}
	if rj.Joined != url || ra.Joined != url || ra.Role != "agent" || ra.Config["node-name"] != "node4" {
		t.Errorf("joiner %+v\nagent %+v", rj, ra)
	}
	if got, _ := os.ReadFile(filepath.Join(agent.dataDir, "agent/server-ca.crt")); !bytes.Equal(got, ca.CertPEM()) {
		t.Error("the agent did not save the cluster's server CA")
	}

	// The API answers like k3s': /ping for anyone, /readyz only with a
	// client certificate of the cluster (here k3s' own admin one).
	tlsDir := filepath.Join(init.dataDir, "server/tls")
	admin, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "client-admin.crt"), filepath.Join(tlsDir, "client-admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	get := func(path string, certs ...tls.Certificate) (int, string) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		resp, err := c.Get(url + path)
		if err != nil {
			t.Fatalf("GET %s (verified against the cluster CA): %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz", admin); code != 200 || body != "ok" {
		t.Errorf("readyz as admin: %d %q", code, body)
	}
	if code, _ := get("/readyz"); code != http.StatusUnauthorized {
		t.Errorf("anonymous readyz: %d, want 401", code)
	}
	if code, body := get("/ping"); code != 200 || body != "pong" {
		t.Errorf("ping: %d %q", code, body)
	}
	if fi, err := os.Stat(filepath.Join(filepath.Dir(init.config), RecordName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record mode: %v %v; want 0600 (it copies the token)", fi.Mode(), err)
	}
}

func TestBinaryWithoutTokenExitsNonZero(t *testing.T) {
	bin := buildFake(t)
	n := newNode(t, "cluster-init: true\nnode-name: node1\nnode-ip: "+loopback()+"\n")
	out, err := exec.Command(bin, "server", "--config", n.config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no token") {
		t.Fatalf("fake-k3s without token: %v %s; want a non-zero exit naming the token", err, out)
	}
}

// lockedBuffer is a log shared by the fake's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestRunRejects(t *testing.T) {
	srvIP := loopback()
	srv := newNode(t, "cluster-init: true\ntoken: plain\nnode-name: node1\nnode-ip: "+srvIP+"\n")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := Run(ctx, []string{"server", "-c", srv.config}, func(string) string { return "" }, &lockedBuffer{}); err != nil {
			t.Errorf("server: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	waitRecord(t, srv)
	url := "https://" + srvIP + ":6443"

	tests := []struct {
		name, role, yaml, want string
	}{
		{"no token", "agent", "server: " + url + "\nnode-name: a\n", "no token"},
		{"unknown key", "server", "token: x\ncluster-inti: true\n", `unknown key "cluster-inti"`},
		{"server flag in agent config", "agent", "server: " + url + "\ntoken: x\ntls-san: [a]\n", `"tls-san" is a server flag`},
		{"agent without server", "agent", "token: x\n", "needs server:"},
		{"token pins another CA", "agent", "server: " + url + "\ntoken: K10" + strings.Repeat("ab", 32) + "::server:x\n", "does not match the token's hash"},
		{"not YAML", "server", "token: [x\n", "parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, tt.yaml)
			short, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			err := Run(short, []string{tt.role, "--config=" + n.config}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v; want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{nil, {"etcd-snapshot"}, {"server", "--token", "x"}, {"server", "--config"}} {
			if err := Run(ctx, args, func(string) string { return "" }, io.Discard); err == nil {
				t.Errorf("Run(%q) = nil error", args)
			}
		}
	})
	t.Run("K3S_CONFIG_FILE names the config", func(t *testing.T) {
		n := newNode(t, "token: x\nnode-name: a\n")
		env := func(k string) string {
			if k == "K3S_CONFIG_FILE" {
				return n.config
			}
			return ""
		}
		err := Run(ctx, []string{"agent"}, env, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "needs server:") {
			t.Fatalf("Run = %v; want the agent error from the env-named config", err)
		}
	})
}

// k3s' units are Type=notify: like k3s, the stand-in says READY=1 to
// systemd once it serves, or a start job through D-Bus would never end.
func TestServerNotifiesSystemd(t *testing.T) {
	bin := buildFake(t)
	ca, err := cluster.NewCA("k3s-server-ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caKey, _ := ca.KeyPEM()
	sum := sha256.Sum256(ca.CertPEM())
	ip := loopback()
	n := newNode(t, "cluster-init: true\ntoken: K10"+hex.EncodeToString(sum[:])+"::server:s3cret\nnode-name: node1\nnode-ip: "+ip+"\n")
	dir := filepath.Join(n.dataDir, "server/tls")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "server-ca.crt"), ca.CertPEM(), 0o644)
	os.WriteFile(filepath.Join(dir, "server-ca.key"), caKey, 0o600)

	sockDir, err := os.MkdirTemp("", "notify")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "s")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	start(t, bin, "server", n)
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	buf := make([]byte, 256)
	k, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify message: %v", err)
	}
	if got := string(buf[:k]); got != "READY=1" {
		t.Errorf("sd_notify %q, want READY=1", got)
	}
	if r := waitRecord(t, n); r.Listen == "" {
		t.Errorf("READY before serving: %+v", r)
	}
}
