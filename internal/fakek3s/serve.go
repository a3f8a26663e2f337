package fakek3s

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// join waits until the server at url answers, then fetches its CA bundle and
// checks it against a secure token's hash, as k3s does before joining.
func join(ctx context.Context, url, token string, log io.Writer) ([]byte, error) {
	// The CA is not known yet: it is pinned by the token's hash below.
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	url = strings.TrimSuffix(url, "/")
	wait := 100 * time.Millisecond
	for n := 0; ; n++ {
		resp, err := get(ctx, client, url+"/readyz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if n%20 == 0 {
			fmt.Fprintf(log, "fake-k3s: waiting for %s: %v\n", url, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("fake-k3s: server %s never answered: %w", url, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
	resp, err := get(ctx, client, url+"/cacerts")
	if err != nil {
		return nil, fmt.Errorf("fake-k3s: fetch CA from %s: %w", url, err)
	}
	defer resp.Body.Close()
	ca, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fake-k3s: fetch CA from %s: %s %v", url, resp.Status, err)
	}
	if strings.HasPrefix(token, "K10") {
		want, _, ok := strings.Cut(strings.TrimPrefix(token, "K10"), "::")
		sum := sha256.Sum256(ca)
		if !ok || hex.EncodeToString(sum[:]) != want {
			return nil, fmt.Errorf("fake-k3s: the CA served by %s does not match the token's hash", url)
		}
	}
	return ca, nil
}

func get(ctx context.Context, c *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

func serve(ctx context.Context, cfg *config, dataDir, configPath string, rec *Record, log io.Writer) error {
	host := cfg.str("bind-address")
	if host == "" {
		host = cfg.str("node-ip")
	}
	if host == "" {
		host = "0.0.0.0"
	}
	port := cfg.str("https-listen-port")
	if port == "" {
		port = "6443"
	}
	sans := append([]string{"127.0.0.1", "localhost", "kubernetes", cfg.str("node-ip"), cfg.str("node-name")}, cfg.list("tls-san")...)
	pki, err := ensurePKI(filepath.Join(dataDir, "server", "tls"), sans)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dataDir, "agent", "server-ca.crt"), pki.serverCAPEM, 0o644); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ping", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "pong") })
	mux.HandleFunc("/cacerts", func(w http.ResponseWriter, _ *http.Request) { w.Write(pki.serverCAPEM) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	})
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return fmt.Errorf("fake-k3s: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{pki.serving},
			ClientCAs:    pki.clientCAs,
			ClientAuth:   tls.VerifyClientCertIfGiven,
			MinVersion:   tls.VersionTLS12,
		},
		ErrorLog: stdlog.New(log, "fake-k3s: ", 0),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	// k3s' own sign that this server is an etcd member with data of its
	// own: a restart starts from it instead of joining again.
	if err := os.MkdirAll(filepath.Join(dataDir, memberDir), 0o700); err != nil {
		srv.Close()
		return err
	}
	rec.Listen = ln.Addr().String()
	rec.Ready = time.Now()
	if err := writeRecord(configPath, rec); err != nil {
		srv.Close()
		return err
	}
	fmt.Fprintf(log, "fake-k3s: server %s serving on %s\n", cfg.str("node-name"), rec.Listen)
	notifyReady()
	select {
	case err := <-errc:
		return fmt.Errorf("fake-k3s: serve: %w", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shut); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
