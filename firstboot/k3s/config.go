// Package k3s writes the node's k3s configuration for its role in the
// committed plan and waits for the Kubernetes API to come up.
package k3s

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/homecloud/homecloud/internal/cluster"
)

// Paths inside a node's root file system, and the units that run k3s.
const (
	ConfigPath   = "/etc/rancher/k3s/config.yaml"
	DataDir      = "/var/lib/rancher/k3s"
	ManifestsDir = DataDir + "/server/manifests"
	ServerTLSDir = DataDir + "/server/tls"
	AgentDir     = DataDir + "/agent"
	ServerUnit   = "k3s.service"
	AgentUnit    = "k3s-agent.service"
	APIPort      = 6443
)

// Etcd timings for SD cards and eMMC: etcd's defaults (100 ms heartbeat,
// 1 s election) make slow fsyncs look like a dead leader and cause
// elections under load. etcd wants election ≈ 10 × heartbeat.
var etcdArgs = []string{"heartbeat-interval=500", "election-timeout=5000"}

// Role is what k3s runs as on a node.
type Role string

const (
	Server Role = "server"
	Agent  Role = "agent"
)

// Unit is the systemd unit that runs k3s in role r.
func (r Role) Unit() string {
	if r == Server {
		return ServerUnit
	}
	return AgentUnit
}

// Node is one cluster member as the roles plan names it.
type Node struct {
	Name string
	Addr netip.Addr
}

// Params is what RenderConfig needs from the plan and node.json.
type Params struct {
	Self       Node
	Servers    []Node // the k3s servers, this node among them if it is one
	InitServer string // name of the server that runs cluster-init
	Token      string // the cluster's k3s token (the content of its secret file)
	VIP        netip.Addr
	Domain     string
	Iface      string // LAN interface for flannel; empty lets k3s choose
	// DataDir overrides k3s' data dir; set only when one machine runs
	// several nodes under different roots (tests).
	DataDir string
}

// config is the subset of k3s' flags we set; keys are the flag names, as
// k3s reads its config file. Repeatable flags are lists.
type config struct {
	Server              string   `yaml:"server,omitempty"`
	ClusterInit         bool     `yaml:"cluster-init,omitempty"`
	Token               string   `yaml:"token"`
	NodeName            string   `yaml:"node-name"`
	NodeIP              string   `yaml:"node-ip"`
	FlannelIface        string   `yaml:"flannel-iface,omitempty"`
	DataDir             string   `yaml:"data-dir,omitempty"`
	TLSSAN              []string `yaml:"tls-san,omitempty"`
	Disable             []string `yaml:"disable,omitempty"`
	WriteKubeconfigMode string   `yaml:"write-kubeconfig-mode,omitempty"`
	EtcdArg             []string `yaml:"etcd-arg,omitempty"`
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	domainRE = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	ifaceRE  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$`)
	tokenRE  = regexp.MustCompile(`^[\x21-\x7e]+$`)
)

// Role reports this node's role: a server if the plan lists it as one.
func (p Params) Role() Role {
	for _, s := range p.Servers {
		if s.Name == p.Self.Name {
			return Server
		}
	}
	return Agent
}

func (p Params) initServer() (Node, bool) {
	for _, s := range p.Servers {
		if s.Name == p.InitServer {
			return s, true
		}
	}
	return Node{}, false
}

func (p Params) validate() error {
	if !nameRE.MatchString(p.Self.Name) {
		return fmt.Errorf("k3s config: node name %q is not a DNS label (lower-case letters, digits, '-')", p.Self.Name)
	}
	if !p.Self.Addr.IsValid() {
		return fmt.Errorf("k3s config: node %s has no address", p.Self.Name)
	}
	if len(p.Servers) == 0 {
		return errors.New("k3s config: the plan lists no k3s servers")
	}
	seen := map[string]bool{}
	for _, s := range p.Servers {
		if !nameRE.MatchString(s.Name) || !s.Addr.IsValid() {
			return fmt.Errorf("k3s config: server %q/%v needs a DNS-label name and an address", s.Name, s.Addr)
		}
		if seen[s.Name] {
			return fmt.Errorf("k3s config: server %s listed twice", s.Name)
		}
		seen[s.Name] = true
		if s.Name == p.Self.Name && s.Addr != p.Self.Addr {
			return fmt.Errorf("k3s config: the plan gives %s address %s but the node has %s", s.Name, s.Addr, p.Self.Addr)
		}
	}
	if _, ok := p.initServer(); !ok {
		return fmt.Errorf("k3s config: cluster-init server %q is not among the servers", p.InitServer)
	}
	if p.Token == "" {
		return fmt.Errorf("k3s config: empty token: the cluster's token file (%s) must hold the secret the builder made", cluster.K3sTokenPath)
	}
	if !tokenRE.MatchString(p.Token) {
		return errors.New("k3s config: the token has spaces or control characters; regenerate it with the builder")
	}
	if p.Domain != "" && !domainRE.MatchString(p.Domain) {
		return fmt.Errorf("k3s config: domain %q is not a lower-case DNS name", p.Domain)
	}
	if p.Iface != "" && !ifaceRE.MatchString(p.Iface) {
		return fmt.Errorf("k3s config: interface name %q is not valid", p.Iface)
	}
	if p.DataDir != "" && !filepath.IsAbs(p.DataDir) {
		return fmt.Errorf("k3s config: data dir %q must be absolute", p.DataDir)
	}
	return nil
}

// RenderConfig renders /etc/rancher/k3s/config.yaml for the node's role: the
// init server starts etcd with cluster-init, the other servers and the
// agents join it. The file holds the token: write it 0600.
func RenderConfig(p Params) ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	c := config{
		Token:        p.Token,
		NodeName:     p.Self.Name,
		NodeIP:       p.Self.Addr.String(),
		FlannelIface: p.Iface,
		DataDir:      p.DataDir,
	}
	init, _ := p.initServer()
	if p.Self.Name == init.Name {
		c.ClusterInit = true
	} else {
		c.Server = ServerURL(init.Addr)
	}
	if p.Role() == Server {
		if p.VIP.IsValid() {
			c.TLSSAN = append(c.TLSSAN, p.VIP.String())
		}
		if p.Domain != "" {
			c.TLSSAN = append(c.TLSSAN, p.Domain)
		}
		c.TLSSAN = append(c.TLSSAN, p.Self.Addr.String())
		// The stack deploys its own Traefik with its own configuration.
		c.Disable = []string{"traefik"}
		c.WriteKubeconfigMode = "0600"
		c.EtcdArg = etcdArgs
	}
	var b bytes.Buffer
	b.WriteString("# Written by homecloud-firstboot from the cluster's plan; edits are overwritten.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("k3s config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("k3s config: %w", err)
	}
	return b.Bytes(), nil
}

// WriteConfig renders the config and writes it under root (0600: it holds
// the token), atomically. changed says whether the file's content differs
// from what was there, i.e. whether a running k3s must be restarted.
func WriteConfig(root string, p Params) (changed bool, err error) {
	data, err := RenderConfig(p)
	if err != nil {
		return false, err
	}
	path := filepath.Join(root, ConfigPath)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := cluster.WriteFileAtomic(path, data, 0o600); err != nil {
		return false, err
	}
	return true, nil
}

// LoadToken reads the cluster's k3s token file (surrounding white space,
// such as a final newline, is not part of the token).
func LoadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read k3s token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("read k3s token: %s is empty; the builder writes the cluster's token there", path)
	}
	return tok, nil
}

// ServerURL is the supervisor/API URL of a server.
func ServerURL(addr netip.Addr) string {
	return "https://" + net.JoinHostPort(addr.String(), fmt.Sprint(APIPort))
}

// ReadyzURL is the API's readiness endpoint on a server.
func ReadyzURL(addr netip.Addr) string { return ServerURL(addr) + "/readyz" }

// NodeIP reads the node-ip of the config WriteConfig wrote under root: the
// address the node's API serves its peers on. keepalived's check asks the
// API there rather than on 127.0.0.1, so a node claims the VIP only when
// its API answers on the LAN, where the VIP's clients reach it.
func NodeIP(root string) (netip.Addr, error) {
	path := filepath.Join(root, ConfigPath)
	b, err := os.ReadFile(path)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("read k3s config: %w", err)
	}
	var c config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return netip.Addr{}, fmt.Errorf("read k3s config %s: %w", path, err)
	}
	a, err := netip.ParseAddr(c.NodeIP)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("k3s config %s: node-ip %q: %w", path, c.NodeIP, err)
	}
	return a, nil
}
