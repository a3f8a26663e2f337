// Package status is the node's own view of the cluster, served as JSON over
// HTTP so a person (or a test) can ask any node where it stands.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Peer is a node this one has seen over mDNS.
type Peer struct {
	Name     string `json:"name"`
	RaftAddr string `json:"raft_addr"`
	State    string `json:"state"`
}

// Member is a node in the raft configuration.
type Member struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	Voter bool   `json:"voter"`
}

// View is what GET /status returns.
type View struct {
	Node      string          `json:"node"`
	ClusterID string          `json:"cluster_id"`
	Step      string          `json:"step"`
	Done      []string        `json:"done"`
	Error     string          `json:"error,omitempty"`
	Peers     []Peer          `json:"peers"`
	Leader    string          `json:"leader"`
	Members   []Member        `json:"members"`
	Plan      json.RawMessage `json:"plan,omitempty"`
	Role      string          `json:"role,omitempty"`
	VIP       string          `json:"vip,omitempty"`
	HoldsVIP  bool            `json:"holds_vip"`
	// VIPHolder is who holds the VIP as far as this node can tell: itself,
	// or the server that says so on its own status endpoint.
	VIPHolder string `json:"vip_holder,omitempty"`
	Bootstrap bool   `json:"bootstrapped_here"`
	// Warning is what the node cannot mend by itself and the user can.
	Warning string    `json:"warning,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// Board holds the current view; the state machine updates it.
type Board struct {
	mu sync.Mutex
	v  View
	// Probe, when set, fills in live fields (leader, members, VIP) per request.
	Probe func(ctx context.Context, v *View)
}

// Update changes the view under the lock.
func (b *Board) Update(f func(v *View)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(&b.v)
	b.v.Updated = time.Now()
}

// Get returns a copy of the view with live fields probed.
func (b *Board) Get(ctx context.Context) View {
	b.mu.Lock()
	v := b.v
	v.Done = append([]string(nil), b.v.Done...)
	probe := b.Probe
	b.mu.Unlock()
	if probe != nil {
		probe(ctx, &v)
	}
	return v
}

// Handler serves /status (JSON) and / (a short text page).
func (b *Board) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(b.Get(ctx))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		v := b.Get(r.Context())
		fmt.Fprintf(w, "homecloud node %s\nstep: %s\nleader: %s\nrole: %s\nholds VIP %s: %v\n",
			v.Node, v.Step, v.Leader, v.Role, v.VIP, v.HoldsVIP)
	})
	return mux
}

// Serve listens on addr until ctx ends.
func (b *Board) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("status listen %s: %w", addr, err)
	}
	// Every connection ends: peers and pods reach this port, and without a
	// read or idle timeout net/http keeps an idle keep-alive connection
	// for ever. The write timeout leaves room for the probe of k3s.
	srv := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Decode parses a status document.
func Decode(b []byte) (*View, error) {
	var v View
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	return &v, nil
}

// Fetch reads another node's status (used for the VIP holder and by the
// `status` command).
func Fetch(ctx context.Context, url string) (*View, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch status %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("fetch status %s: %s: %s", url, resp.Status, b)
	}
	var v View
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return nil, fmt.Errorf("decode status %s: %w", url, err)
	}
	return &v, nil
}
