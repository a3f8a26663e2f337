// Package discovery finds the other nodes of a cluster on the LAN over
// mDNS/DNS-SD: every node announces "_homecloud._tcp" with its identity in
// the TXT record and browses for the announcements of its own cluster id.
//
// It is built on github.com/enbility/zeroconf/v2 (pinned pseudo-version),
// not grandcat/zeroconf or hashicorp/mdns: grandcat's only tag (v1.0.0,
// 2020) lacks later fixes, and in network-namespace tests only the enbility
// fork delivered TXT updates and removals to a running browse, while
// hashicorp/mdns fails on a LAN without a default route. The fork sends
// every packet with the outgoing interface set (IP_PKTINFO), which is what
// makes multicast work without a default route.
//
// What the fork does, read from its source, and what this package adds:
//   - The responder answers with a TTL of 3200 s by default; a node that dies
//     without a goodbye would linger that long, so announcements use TTL
//     seconds. A browse expires an entry TTL after the last answer it saw.
//   - A browse re-queries 4 s after starting, then at intervals growing by
//     1.5–2.5× up to 60 s: bounded traffic, and every answer refreshes the
//     entries' expiry well within TTL.
//   - A browse only reports an entry from a packet that also carries its
//     address records, so the bare TXT announcement of Server.SetText is
//     dropped by it; SetText also races with the responder goroutines. See
//     Announcer.Update for what is done instead.
//   - Close sends the goodbye (TTL 0) once; browses report it as a removal.
//     If that packet is lost, the peer expires after TTL.
//   - A browse reports an entry again only when it changes, and honours
//     any TTL: a Watcher keeps every distinct announcement (a false claim
//     of a name must not hide the node), at most maxEntries, forgets those
//     not heard for maxTTL, and restarts its browse so that live ones are
//     heard again.
//
// mDNS is unauthenticated: anyone on the LAN can announce anything. What a
// Watcher reports is a hint of whom to dial; the consensus layer verifies
// each peer's certificate (and its fingerprint) in a mutual TLS handshake
// against the cluster CA before trusting it.
package discovery

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Service and Domain are the DNS-SD service type and domain announced.
const (
	Service = "_homecloud._tcp"
	Domain  = "local."
)

// TTL is the lifetime, in seconds, of the announced records: the longest a
// peer that vanished without a goodbye stays visible (plus the browse's
// 5 s cleanup tick). RFC 6762 recommends 120 s for host records.
const TTL = 120

// Node states announced in Info.State.
const (
	StateNew    = "new"    // no raft state yet
	StateMember = "member" // has raft state
)

// txtVersion is the TXT schema; records of another version are ignored.
const txtVersion = "1"

// Info is what a node announces about itself.
type Info struct {
	ClusterID   string // cluster id (cluster.ID of the CA), not a secret
	Name        string // node name, a DNS label; peers are keyed by it
	RaftAddr    string // ip:port peers dial; "" or 0.0.0.0 means "my address"
	Fingerprint string // sha256 hex of the node certificate
	State       string // StateNew or StateMember
	StatusAddr  string // ip:port of the status endpoint, optional
}

// Config says where to announce and browse.
type Config struct {
	// Interfaces are the interface names to use; empty means every
	// interface that is up and multicast-capable.
	Interfaces []string
	// Instance is the DNS-SD instance name; empty means Info.Name.
	Instance string
	// Port is the SRV port; 0 means the port of Info.RaftAddr.
	Port int
	// Logger gets debug lines for ignored records and warnings for
	// conflicts; nil discards them.
	Logger *slog.Logger
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// interfaces resolves cfg.Interfaces, or lists the usable ones.
func (c Config) interfaces() ([]net.Interface, error) {
	if len(c.Interfaces) == 0 {
		all, err := net.Interfaces()
		if err != nil {
			return nil, fmt.Errorf("list interfaces: %w", err)
		}
		var out []net.Interface
		for _, ifi := range all {
			if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 && ifi.Flags&net.FlagLoopback == 0 {
				out = append(out, ifi)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no interface is up and multicast-capable: bring the LAN interface up or name it in Config.Interfaces")
		}
		return out, nil
	}
	out := make([]net.Interface, 0, len(c.Interfaces))
	for _, name := range c.Interfaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w (names as `ip link` shows them)", name, err)
		}
		if ifi.Flags&net.FlagUp == 0 {
			return nil, fmt.Errorf("interface %q is down: bring it up first", name)
		}
		if ifi.Flags&net.FlagMulticast == 0 {
			return nil, fmt.Errorf("interface %q cannot multicast: mDNS needs a multicast-capable LAN interface", name)
		}
		out = append(out, *ifi)
	}
	return out, nil
}

// validate checks the fields a peer needs; it is used on both sides.
func (i Info) validate() error {
	var errs []error
	if i.ClusterID == "" {
		errs = append(errs, errors.New("cluster id: empty"))
	} else if strings.ContainsAny(i.ClusterID, "= \t") {
		errs = append(errs, fmt.Errorf("cluster id %q: must not contain '=' or blanks", i.ClusterID))
	}
	if err := validLabel(i.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	if !isHex(i.Fingerprint, 64) {
		errs = append(errs, fmt.Errorf("fingerprint %q: want 64 lower-case hex digits (sha256 of the node certificate)", i.Fingerprint))
	}
	if i.State != StateNew && i.State != StateMember {
		errs = append(errs, fmt.Errorf("state %q: want %q or %q", i.State, StateNew, StateMember))
	}
	if _, err := parseRaftAddr(i.RaftAddr); err != nil {
		errs = append(errs, err)
	}
	if i.StatusAddr != "" {
		if _, err := netip.ParseAddrPort(i.StatusAddr); err != nil {
			errs = append(errs, fmt.Errorf("status address %q: want ip:port: %w", i.StatusAddr, err))
		}
	}
	return errors.Join(errs...)
}

// txt renders i as DNS-SD TXT strings (RFC 6763 key=value).
func (i Info) txt() []string {
	t := []string{
		"v=" + txtVersion,
		"cluster=" + i.ClusterID,
		"name=" + i.Name,
		"raft=" + i.RaftAddr,
		"fp=" + i.Fingerprint,
		"state=" + i.State,
	}
	if i.StatusAddr != "" {
		t = append(t, "status="+i.StatusAddr)
	}
	return t
}

// parseTXT reads the TXT strings of an announcement. Unknown keys are
// ignored so later versions can add some; of a repeated key the first one
// counts (RFC 6763 §6.4).
func parseTXT(txt []string) (Info, error) {
	kv := make(map[string]string, len(txt))
	for _, s := range txt {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			continue
		}
		k = strings.ToLower(k)
		if _, dup := kv[k]; !dup {
			kv[k] = v
		}
	}
	if v := kv["v"]; v != txtVersion {
		return Info{}, fmt.Errorf("TXT version %q, want %q", v, txtVersion)
	}
	i := Info{
		ClusterID:   kv["cluster"],
		Name:        kv["name"],
		RaftAddr:    kv["raft"],
		Fingerprint: kv["fp"],
		State:       kv["state"],
		StatusAddr:  kv["status"],
	}
	if err := i.validate(); err != nil {
		return Info{}, err
	}
	return i, nil
}

// raftAddr is a parsed Info.RaftAddr: an unspecified host means the
// announced address, port 0 the SRV port.
type raftAddr struct {
	host netip.Addr // invalid or unspecified: use the announced address
	port uint16
}

func parseRaftAddr(s string) (raftAddr, error) {
	if s == "" {
		return raftAddr{}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.IsUnspecified() {
		return raftAddr{}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return raftAddr{}, fmt.Errorf("raft address %q: want ip:port: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return raftAddr{}, fmt.Errorf("raft address %q: bad port: %w", s, err)
	}
	r := raftAddr{port: uint16(p)}
	if host != "" {
		if r.host, err = netip.ParseAddr(host); err != nil {
			return raftAddr{}, fmt.Errorf("raft address %q: host must be an IP address: %w", s, err)
		}
	}
	if r.port == 0 && r.host.IsValid() && !r.host.IsUnspecified() {
		return raftAddr{}, fmt.Errorf("raft address %q: port 0", s)
	}
	return r, nil
}

// resolve makes the address a peer dials: the announced host and port,
// with the gaps filled from the announced addresses and the SRV port.
func (r raftAddr) resolve(addrs []netip.Addr, srvPort int) (string, error) {
	port := r.port
	if port == 0 {
		if srvPort <= 0 || srvPort > 65535 {
			return "", fmt.Errorf("no raft port: TXT has none and SRV port is %d", srvPort)
		}
		port = uint16(srvPort)
	}
	host := r.host
	if !host.IsValid() || host.IsUnspecified() {
		host = dialable(addrs)
		if !host.IsValid() {
			return "", fmt.Errorf("no raft host: TXT has none and no dialable address among %v", addrs)
		}
	}
	return netip.AddrPortFrom(host, port).String(), nil
}

// dialable picks the address to dial from the announced ones: IPv4 first
// (home LANs have it), then a global IPv6. Link-local IPv6 addresses come
// without a zone, so they cannot be dialled.
func dialable(addrs []netip.Addr) netip.Addr {
	for _, a := range addrs {
		if a.Is4() && !a.IsLoopback() && !a.IsUnspecified() {
			return a
		}
	}
	for _, a := range addrs {
		if a.Is6() && a.IsGlobalUnicast() {
			return a
		}
	}
	return netip.Addr{}
}

// validLabel accepts a DNS label: the name also becomes the SRV target
// host "<name>.local.".
func validLabel(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", s)
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(s)-1
		if !ok {
			return fmt.Errorf("%q: use letters, digits and inner '-' only", s)
		}
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
