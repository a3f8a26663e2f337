package cluster

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeIdentity issues a node certificate from ca and writes the three files.
func writeIdentity(t *testing.T, ca, trust *CA, now time.Time) (caF, certF, keyF string) {
	t.Helper()
	dir := t.TempDir()
	c, k, err := ca.Issue("node1", []net.IP{net.ParseIP("127.0.0.1")}, now)
	if err != nil {
		t.Fatal(err)
	}
	caF, certF, keyF = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "node.crt"), filepath.Join(dir, "node.key")
	for f, b := range map[string][]byte{caF: trust.CertPEM(), certF: c, keyF: k} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return
}

func TestLoadIdentity(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("home", now)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("rogue", now)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		signer  *CA
		at      time.Time
		wantErr string
	}{
		{"signed by cluster CA", ca, now, ""},
		{"signed by another CA", other, now, "not signed by the cluster CA"},
		{"expired", ca, now.Add(11 * 365 * 24 * time.Hour), "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caF, certF, keyF := writeIdentity(t, tt.signer, ca, now)
			_, err := LoadIdentity(caF, certF, keyF, tt.at)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("LoadIdentity: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("LoadIdentity error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestMutualTLSRefusesForeignCA(t *testing.T) {
	now := time.Now()
	ca, _ := NewCA("home", now)
	rogueCA, _ := NewCA("rogue", now)
	load := func(signer *CA) *Identity {
		caF, certF, keyF := writeIdentity(t, signer, signer, now)
		id, err := LoadIdentity(caF, certF, keyF, now)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	server, member, rogue := load(ca), load(ca), load(rogueCA)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
				c.Write([]byte("ok"))
			}()
		}
	}()
	dial := func(id *Identity) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), id.ClientTLS())
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 2)
		_, err = c.Read(buf)
		return err
	}
	if err := dial(member); err != nil {
		t.Fatalf("member of the cluster refused: %v", err)
	}
	if err := dial(rogue); err == nil {
		t.Fatal("node with a certificate from another CA got through the handshake")
	}
}

func TestCARoundTripAndID(t *testing.T) {
	dir := t.TempDir()
	ca, _ := NewCA("home", time.Now())
	key, _ := ca.KeyPEM()
	os.WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM(), 0o600)
	os.WriteFile(filepath.Join(dir, "ca.key"), key, 0o600)
	back, err := LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if ID(back.Cert) != ID(ca.Cert) || len(ID(ca.Cert)) != 16 {
		t.Fatalf("cluster id changed across a reload: %s vs %s", ID(back.Cert), ID(ca.Cert))
	}
	other, _ := NewCA("home", time.Now())
	if ID(other.Cert) == ID(ca.Cert) {
		t.Fatal("two CAs with the same name share a cluster id")
	}
}
