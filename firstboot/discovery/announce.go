package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/enbility/zeroconf/v2"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// Announcer keeps one node's announcement on the LAN.
type Announcer struct {
	ifaces   []net.Interface
	short    string // instance name as configured
	instance string // full instance name, "<short>._homecloud._tcp.local."
	port     int
	log      *slog.Logger
	stop     func() bool // detaches Close from ctx

	mu     sync.Mutex
	server *zeroconf.Server
	info   Info
	closed bool
}

// Announce starts announcing info on the LAN and answering queries for it
// until Close is called or ctx is done (which closes it the same way).
// The SRV record points at "<Name>.local." with the addresses of the
// chosen interfaces, looked up when each answer is sent, so they follow
// DHCP changes. The OS host name is not used: cloned images share one.
func Announce(ctx context.Context, cfg Config, info Info) (*Announcer, error) {
	if err := info.validate(); err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	instance := cfg.Instance
	if instance == "" {
		instance = info.Name
	}
	if instance == "" || len(instance) > 63 || strings.ContainsAny(instance, ".\\") {
		return nil, fmt.Errorf("announce: instance %q: want 1 to 63 bytes without '.' or '\\'", instance)
	}
	port := cfg.Port
	if port == 0 {
		r, _ := parseRaftAddr(info.RaftAddr) // validated above
		port = int(r.port)
	}
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("announce: port %d: set Config.Port or a port in RaftAddr", port)
	}
	ifaces, err := cfg.interfaces()
	if err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	if err := haveAddress(ifaces); err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	a := &Announcer{
		ifaces:   ifaces,
		short:    instance,
		port:     port,
		instance: instance + "." + Service + "." + Domain,
		log:      cfg.logger(),
		info:     info,
	}
	if a.server, err = a.register(info); err != nil {
		return nil, fmt.Errorf("announce: %w", err)
	}
	a.stop = context.AfterFunc(ctx, a.Close)
	a.log.Info("mdns: announcing", "instance", instance, "port", port, "interfaces", ifaceNames(ifaces), "state", info.State)
	return a, nil
}

// Update replaces the announced info (e.g. State new → member). Running
// browses on the LAN report the change within a round trip. The name
// cannot change: Close and Announce again for that.
//
// The fork's Server.SetText is not used: it swaps the TXT slice under the
// responder goroutines without a lock (a data race the race detector
// reports), and browses drop the bare TXT packet it sends. Update starts a
// new responder instead, withdraws the old one and asks the new one for its
// full record set: browses see the node vanish and come back with the new
// TXT within milliseconds; a Watcher's Changed fires for both.
func (a *Announcer) Update(info Info) error {
	if err := info.validate(); err != nil {
		return fmt.Errorf("announce update: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("announce update: announcer is closed")
	}
	if info.Name != a.info.Name {
		return fmt.Errorf("announce update: name %q → %q: Close and Announce again to rename", a.info.Name, info.Name)
	}
	// Start the new responder first: if that fails the old one stays.
	server, err := a.register(info)
	if err != nil {
		return fmt.Errorf("announce update: %w", err)
	}
	a.server.Shutdown()
	a.server, a.info = server, info
	// The new responder's own announcements start only after its probes
	// (≈ 1 s); a query makes it answer at once.
	if err := queryInstance(a.ifaces, a.instance); err != nil {
		a.log.Warn("mdns: update announced, but peers see it only after ≈ 1 s", "err", err)
	}
	a.log.Info("mdns: announcement updated", "instance", a.instance, "state", info.State)
	return nil
}

func (a *Announcer) register(info Info) (*zeroconf.Server, error) {
	// No IPs given: the responder then answers with the addresses of the
	// interface each query came in on, so they follow DHCP changes.
	s, err := zeroconf.RegisterProxy(a.short, Service, Domain, a.port, info.Name, nil, info.txt(), a.ifaces, zeroconf.TTL(TTL))
	if err != nil {
		return nil, fmt.Errorf("announce %s on %s: %w", a.short, ifaceNames(a.ifaces), err)
	}
	return s, nil
}

// Close sends the goodbye and stops answering. It is safe to call twice.
func (a *Announcer) Close() {
	a.stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.closed = true
	a.server.Shutdown()
	a.log.Info("mdns: announcement withdrawn", "instance", a.instance)
}

// queryInstance multicasts one mDNS query for name on every interface,
// from port 5353 as RFC 6762 §6.7 wants (Go binds a multicast listen
// address as the wildcard with SO_REUSEADDR, beside the responder's
// socket). The interface is set per packet: without a default route a
// multicast send fails with "network unreachable" otherwise.
func queryInstance(ifaces []net.Interface, name string) error {
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 5353}
	conn, err := net.ListenUDP("udp4", group)
	if err != nil {
		return fmt.Errorf("open mDNS query socket: %w", err)
	}
	defer conn.Close()
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetMulticastTTL(255); err != nil {
		return fmt.Errorf("set multicast TTL: %w", err)
	}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.Id = 0
	m.RecursionDesired = false
	buf, err := m.Pack()
	if err != nil {
		return fmt.Errorf("pack query for %s: %w", name, err)
	}
	var errs []error
	for _, ifi := range ifaces {
		if _, err := pc.WriteTo(buf, &ipv4.ControlMessage{IfIndex: ifi.Index}, group); err != nil {
			errs = append(errs, fmt.Errorf("send query on %s: %w", ifi.Name, err))
		}
	}
	if len(errs) == len(ifaces) {
		return errors.Join(errs...)
	}
	return nil
}

func haveAddress(ifaces []net.Interface) error {
	for _, ifi := range ifaces {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() {
				return nil
			}
		}
	}
	return fmt.Errorf("no address on %s: wait for the network step to configure one", ifaceNames(ifaces))
}

func ifaceNames(ifaces []net.Interface) string {
	names := make([]string, len(ifaces))
	for i, ifi := range ifaces {
		names[i] = ifi.Name
	}
	return strings.Join(names, ",")
}
