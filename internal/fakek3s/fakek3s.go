// Package fakek3s is the test double for the k3s binary, the one piece of
// the stack that cannot be run here. It is invoked as the unit files invoke
// k3s (`k3s server|agent [--config FILE]`), reads the same config.yaml and
// does the parts of k3s the node service observes:
//
//   - a server writes its CAs, serving and admin client certificates under
//     <data-dir>/server/tls (keeping pre-generated CAs) and serves HTTPS on
//     <node-ip>:6443: /ping, /cacerts, and /readyz (200 "ok" for a client
//     certificate of its client CA, 401 otherwise: k3s disables anonymous
//     access);
//   - a joining server or an agent first waits until the server URL answers,
//     fetches /cacerts, checks it against a secure token's CA hash
//     (K10<sha256>::…) and saves it as <data-dir>/agent/server-ca.crt.
//
// It records what it was given in fake-k3s.record.json beside the config.
// It is stricter than k3s: a missing token, an unknown key or a server-only
// key in an agent's config is an error, so a renderer bug fails a test.
// A joining server without pre-generated CAs makes its own instead of
// receiving the cluster's through the token.
package fakek3s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"gopkg.in/yaml.v3"

	"github.com/homecloud/homecloud/internal/cluster"
)

// DefaultConfig is where k3s reads its config; K3S_CONFIG_FILE overrides it,
// as it does for k3s.
const (
	DefaultConfig  = "/etc/rancher/k3s/config.yaml"
	DefaultDataDir = "/var/lib/rancher/k3s"
	RecordName     = "fake-k3s.record.json"
)

var agentKeys = []string{"server", "token", "token-file", "node-name", "node-ip", "flannel-iface",
	"data-dir", "node-label", "node-taint", "kubelet-arg"}
var serverOnlyKeys = []string{"cluster-init", "tls-san", "disable", "write-kubeconfig-mode", "etcd-arg",
	"kube-apiserver-arg", "https-listen-port", "bind-address", "agent-token"}

// Record is what one run was given, for tests to inspect.
type Record struct {
	Role       string         `json:"role"`
	Args       []string       `json:"args"`
	ConfigPath string         `json:"config_path"`
	Config     map[string]any `json:"config"`
	PID        int            `json:"pid"`
	Listen     string         `json:"listen,omitempty"` // servers: the API address
	Joined     string         `json:"joined,omitempty"` // the server URL it waited for
	Ready      time.Time      `json:"ready"`            // when it was serving or had joined
}

// ReadRecord reads the record a run wrote beside configPath.
func ReadRecord(configPath string) (*Record, error) {
	p := filepath.Join(filepath.Dir(configPath), RecordName)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read fake-k3s record: %w", err)
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read fake-k3s record %s: %w", p, err)
	}
	return &r, nil
}

// Run behaves as `k3s args...` until ctx ends (the main binds it to
// SIGTERM). Progress goes to log.
func Run(ctx context.Context, args []string, getenv func(string) string, log io.Writer) error {
	if len(args) == 0 || (args[0] != "server" && args[0] != "agent") {
		return errors.New("usage: fake-k3s server|agent [--config FILE]")
	}
	role := args[0]
	path := DefaultConfig
	if env := getenv("K3S_CONFIG_FILE"); env != "" {
		path = env
	}
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--config" || a == "-c":
			if i+1 == len(args) {
				return fmt.Errorf("%s needs a file", a)
			}
			i++
			path = args[i]
		case strings.HasPrefix(a, "--config="):
			path = strings.TrimPrefix(a, "--config=")
		default:
			return fmt.Errorf("fake-k3s understands only --config, not %q: put settings in the config file", a)
		}
	}
	cfg, err := loadConfig(path, role)
	if err != nil {
		return err
	}
	token, err := cfg.token()
	if err != nil {
		return err
	}
	rec := &Record{Role: role, Args: args, ConfigPath: path, Config: cfg.m, PID: os.Getpid()}
	dataDir := cfg.str("data-dir")
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	var caPEM []byte
	// As k3s: a server that already holds etcd data starts from it and an
	// agent that joined before reaches whichever server is up (k3s keeps
	// their list), so neither waits for its config's server: a restart
	// must not need the server the node first joined.
	member := exists(filepath.Join(dataDir, memberDir)) || (role == "agent" && exists(filepath.Join(dataDir, "agent", "server-ca.crt")))
	if url := cfg.str("server"); url != "" && member {
		fmt.Fprintf(log, "fake-k3s: %s restarting from its own data, not waiting for %s\n", role, url)
		rec.Joined = url
	} else if url != "" {
		fmt.Fprintf(log, "fake-k3s: %s joining %s\n", role, url)
		if caPEM, err = join(ctx, url, token, log); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dataDir, "agent", "server-ca.crt"), caPEM, 0o644); err != nil {
			return err
		}
		rec.Joined = url
	} else if role == "agent" {
		return errors.New("fake-k3s: an agent needs server: https://<server>:6443 in its config")
	}
	if role == "agent" {
		rec.Ready = time.Now()
		if err := writeRecord(path, rec); err != nil {
			return err
		}
		fmt.Fprintf(log, "fake-k3s: agent %s joined %s\n", cfg.str("node-name"), rec.Joined)
		notifyReady()
		<-ctx.Done()
		return nil
	}
	return serve(ctx, cfg, dataDir, path, rec, log)
}

// memberDir is where k3s keeps a server's etcd member data, under its
// data dir.
const memberDir = "server/db/etcd/member"

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

type config struct{ m map[string]any }

func loadConfig(path, role string) (*config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fake-k3s: read config: %w", err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("fake-k3s: parse %s: %w", path, err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch {
		case slices.Contains(agentKeys, k):
		case slices.Contains(serverOnlyKeys, k):
			if role == "agent" {
				return nil, fmt.Errorf("fake-k3s: %s: %q is a server flag; an agent's config must not set it", path, k)
			}
		default:
			return nil, fmt.Errorf("fake-k3s: %s: unknown key %q (not a k3s flag this double knows)", path, k)
		}
	}
	return &config{m: m}, nil
}

func (c *config) str(k string) string {
	switch v := c.m[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// list reads a repeatable flag, given as a YAML list or a single value.
func (c *config) list(k string) []string {
	switch v := c.m[k].(type) {
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case nil:
		return nil
	default:
		return []string{fmt.Sprint(v)}
	}
}

func (c *config) token() (string, error) {
	if t := c.str("token"); t != "" {
		return t, nil
	}
	if f := c.str("token-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("fake-k3s: token-file: %w", err)
		}
		if t := strings.TrimSpace(string(b)); t != "" {
			return t, nil
		}
	}
	return "", errors.New("fake-k3s: no token in the config (token: or token-file:): homecloud never lets k3s make one up")
}

func writeRecord(configPath string, r *Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	// 0600: the config it copies holds the token.
	return writeFile(filepath.Join(filepath.Dir(configPath), RecordName), b, 0o600)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return cluster.WriteFileAtomic(path, data, mode)
}

// notifyReady tells systemd the unit is up, as k3s does: its units are
// Type=notify, and a start job would otherwise wait for ever. Outside
// systemd (no NOTIFY_SOCKET) it does nothing.
func notifyReady() {
	daemon.SdNotify(false, daemon.SdNotifyReady)
}
