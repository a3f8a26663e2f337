// Package keepalived renders the node's keepalived.conf for the cluster's
// virtual IP and tells whether this node holds it.
//
// Every node starts as BACKUP with nopreempt: the first to win the election
// keeps the VIP until it dies or its k3s check fails. Without nopreempt a
// recovering higher-priority node would take the VIP back, breaking every
// connection a second time for nothing gained. VRRPv3 allows sub-second
// adverts: with advert_int 0.1 the VIP moves ≈ 0.3 s after its holder dies
// (≈ 3.6 s with VRRPv2's 1 s). Peers are unicast, from the raft membership,
// so nothing depends on multicast reaching every board; adverts from any
// other source are ignored (check_unicast_src: VRRPv3 has no
// authentication, and a device that shouted priority 255 would take the
// VIP). The check starts as
// failed (init_fail): a node claims the VIP only once its k3s has answered.
// The check runs every 2 s with 5 s to finish: it starts a Go binary and
// makes a TLS handshake, which took 1–3.5 s on a loaded emulated board (a 1 s
// interval left keepalived skipping runs and no node ever holding the VIP).
// A dead node is found by its missing adverts, not by the check, so this
// slows only the failover away from a live node whose k3s failed (≈ 4 s).
package keepalived

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// Paths on a node and the unit that runs keepalived.
const (
	ConfigPath = "/etc/keepalived/keepalived.conf"
	Unit       = "keepalived.service"
)

// Node is one VRRP participant as the roles plan names it.
type Node struct {
	Name string
	Addr netip.Addr
}

// Params is what RenderConfig needs from the plan and node.json.
type Params struct {
	Self       Node
	Members    []Node         // every node that runs keepalived, Self among them
	Priorities map[string]int // from the plan, by node name; 1–254
	ClusterID  string         // names the cluster; its hash picks the VRID
	Iface      string         // the LAN interface the VIP lives on
	VIP        netip.Prefix   // e.g. 192.168.1.200/24
	Check      []string       // argv of the health check, e.g. homecloud-firstboot check-k3s
	Notify     []string       // optional argv run on every state change
}

var (
	nameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	ifaceRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$`)
	// Script words: no blanks, quotes, braces or '#', which keepalived's
	// parser would read as syntax.
	wordRE = regexp.MustCompile(`^[A-Za-z0-9_./:=@%+,-]+$`)
)

// VRID maps a cluster id to a virtual_router_id in 1–255, the same on every
// node, so two clusters on one LAN are unlikely to collide.
func VRID(clusterID string) int {
	h := fnv.New32a()
	h.Write([]byte(clusterID))
	return 1 + int(h.Sum32()%255)
}

type view struct {
	RouterID string
	VRID     int
	Priority int
	Iface    string
	Self     string
	Peers    []string
	VIP      string
	Check    string
	Notify   string
}

var conf = template.Must(template.New("keepalived.conf").Parse(`# Written by homecloud-firstboot from the cluster's plan; edits are overwritten.
global_defs {
    router_id {{.RouterID}}
    enable_script_security
    script_user root
    vrrp_version 3
}

vrrp_script chk_k3s {
    script "{{.Check}}"
    interval 2
    fall 2
    rise 1
    timeout 5
    init_fail
}

vrrp_instance homecloud {
    state BACKUP
    nopreempt
    interface {{.Iface}}
    virtual_router_id {{.VRID}}
    priority {{.Priority}}
    advert_int 0.1
{{- if .Peers}}
    unicast_src_ip {{.Self}}
    check_unicast_src
    unicast_peer {
{{- range .Peers}}
        {{.}}
{{- end}}
    }
{{- end}}
    virtual_ipaddress {
        {{.VIP}} dev {{.Iface}}
    }
    track_script {
        chk_k3s
    }
{{- if .Notify}}
    notify "{{.Notify}}"
{{- end}}
}
`))

func script(what string, argv []string) (string, error) {
	if len(argv) == 0 || !filepath.IsAbs(argv[0]) {
		return "", fmt.Errorf("keepalived config: the %s command must start with an absolute path, got %q", what, argv)
	}
	for _, w := range argv {
		if !wordRE.MatchString(w) {
			return "", fmt.Errorf("keepalived config: %s argument %q has characters keepalived would misread (blanks, quotes, braces, #)", what, w)
		}
	}
	return strings.Join(argv, " "), nil
}

// RenderConfig renders keepalived.conf. Every value is checked before it
// reaches the template, so nothing from the plan can add configuration.
func RenderConfig(p Params) ([]byte, error) {
	if !nameRE.MatchString(p.Self.Name) {
		return nil, fmt.Errorf("keepalived config: node name %q is not a DNS label", p.Self.Name)
	}
	if !p.Self.Addr.IsValid() {
		return nil, fmt.Errorf("keepalived config: node %s has no address", p.Self.Name)
	}
	if !ifaceRE.MatchString(p.Iface) {
		return nil, fmt.Errorf("keepalived config: interface name %q is not valid", p.Iface)
	}
	if p.ClusterID == "" {
		return nil, errors.New("keepalived config: empty cluster id")
	}
	if !p.VIP.IsValid() || p.VIP.Addr().Is4() != p.Self.Addr.Is4() {
		return nil, fmt.Errorf("keepalived config: VIP %v must be an address/prefix of the node's family (node %s)", p.VIP, p.Self.Addr)
	}
	if p.VIP.Addr() == p.Self.Addr {
		return nil, fmt.Errorf("keepalived config: the VIP %s is the node's own address", p.VIP.Addr())
	}
	prio, ok := p.Priorities[p.Self.Name]
	if !ok || prio < 1 || prio > 254 {
		return nil, fmt.Errorf("keepalived config: the plan gives %s priority %d; want 1–254", p.Self.Name, prio)
	}
	v := view{RouterID: p.Self.Name, VRID: VRID(p.ClusterID), Priority: prio, Iface: p.Iface,
		Self: p.Self.Addr.String(), VIP: p.VIP.String()}
	self := false
	for _, m := range p.Members {
		if !m.Addr.IsValid() || m.Addr.Is4() != p.Self.Addr.Is4() {
			return nil, fmt.Errorf("keepalived config: member %s has address %v, not of the node's family", m.Name, m.Addr)
		}
		if m.Addr == p.VIP.Addr() {
			return nil, fmt.Errorf("keepalived config: member %s has the VIP %s as its address", m.Name, m.Addr)
		}
		if m.Name == p.Self.Name {
			if m.Addr != p.Self.Addr {
				return nil, fmt.Errorf("keepalived config: the plan gives %s address %s but the node has %s", m.Name, m.Addr, p.Self.Addr)
			}
			self = true
			continue
		}
		v.Peers = append(v.Peers, m.Addr.String())
	}
	if !self {
		return nil, fmt.Errorf("keepalived config: %s is not among the members %v", p.Self.Name, p.Members)
	}
	var err error
	if v.Check, err = script("check", p.Check); err != nil {
		return nil, err
	}
	if p.Notify != nil {
		if v.Notify, err = script("notify", p.Notify); err != nil {
			return nil, err
		}
	}
	var b bytes.Buffer
	if err := conf.Execute(&b, v); err != nil {
		return nil, fmt.Errorf("keepalived config: %w", err)
	}
	return b.Bytes(), nil
}

// Argv runs keepalived in the foreground for the Exec service manager, with
// its own pid files: several instances on one machine (one per network
// namespace) must not share keepalived's default ones.
func Argv(conf, pidDir string) []string {
	return []string{"keepalived", "-n", "-l", "-D", "-f", conf,
		"-p", filepath.Join(pidDir, "keepalived.pid"),
		"-r", filepath.Join(pidDir, "vrrp.pid"),
		"-c", filepath.Join(pidDir, "checkers.pid")}
}
