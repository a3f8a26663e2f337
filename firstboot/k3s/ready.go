package k3s

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// ReadyTLS returns the TLS client configuration for asking the local k3s
// whether it is ready. k3s' API server refuses anonymous requests, so on a
// server it presents k3s' own admin client certificate
// (server/tls/client-admin.crt and .key) and trusts server/tls/server-ca.crt.
// An agent has no API and no admin credentials: it trusts the server CA the
// agent saved when it joined (agent/server-ca.crt) and presents nothing;
// use WaitAnswering with it against the init server.
//
// The files are read at every handshake, so the config can be made before
// k3s has written them: until then handshakes fail and the waits retry.
func ReadyTLS(root string) (*tls.Config, error) {
	srv := filepath.Join(root, ServerTLSDir)
	caFiles := []string{filepath.Join(srv, "server-ca.crt"), filepath.Join(root, AgentDir, "server-ca.crt")}
	certFile, keyFile := filepath.Join(srv, "client-admin.crt"), filepath.Join(srv, "client-admin.key")
	if _, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("k3s readiness TLS: %w", err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if errors.Is(err, os.ErrNotExist) {
				return &tls.Certificate{}, nil // agents: no client certificate
			}
			if err != nil {
				return nil, fmt.Errorf("k3s admin client certificate: %w", err)
			}
			return &c, nil
		},
		// Verification is done by hand against a CA loaded now, not when
		// the config was made; it is as strict as the default one.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			pool, err := loadPool(caFiles)
			if err != nil {
				return err
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("k3s API sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: pool, Intermediates: inter, DNSName: cs.ServerName,
			})
			if err != nil {
				return fmt.Errorf("k3s API certificate: %w", err)
			}
			return nil
		},
	}, nil
}

func loadPool(files []string) (*x509.CertPool, error) {
	for _, f := range files {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("k3s server CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("k3s server CA: no certificate in %s", f)
		}
		return pool, nil
	}
	return nil, fmt.Errorf("k3s server CA: none of %v exists yet", files)
}

// WaitReady polls url (a /readyz endpoint, see ReadyzURL) until it answers
// 200, backing off between tries, for as long as ctx allows.
func WaitReady(ctx context.Context, url string, tlsCfg *tls.Config) error {
	return poll(ctx, url, tlsCfg, func(code int) bool { return code == http.StatusOK })
}

// WaitAnswering polls url until the API answers with any HTTP status over a
// verified TLS connection. An agent has no API of its own: its k3s is
// taken as up once it has saved the server CA (which ReadyTLS needs) and
// the init server's API answers it; without credentials that answer is 401.
func WaitAnswering(ctx context.Context, url string, tlsCfg *tls.Config) error {
	return poll(ctx, url, tlsCfg, func(int) bool { return true })
}

func poll(ctx context.Context, url string, tlsCfg *tls.Config, done func(code int) bool) error {
	tr := &http.Transport{TLSClientConfig: tlsCfg, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	wait := 200 * time.Millisecond
	var last error
	for {
		last = try(ctx, client, url, done)
		if last == nil {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("k3s API at %s not ready: %w (last try: %v)", url, ctx.Err(), last)
		case <-t.C:
		}
		wait = min(wait*2, 3*time.Second)
	}
}

func try(ctx context.Context, client *http.Client, url string, done func(int) bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if !done(resp.StatusCode) {
		return fmt.Errorf("%s: %q", resp.Status, body)
	}
	return nil
}
