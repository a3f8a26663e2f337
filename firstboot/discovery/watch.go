package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/enbility/zeroconf/v2"
)

// Peer is one node of the cluster as announced on the LAN.
type Peer struct {
	Info
	// Addrs are the addresses announced for the node's host name.
	Addrs []netip.Addr
	// LastSeen is when the announcement last arrived or changed; the
	// browse does not report answers that repeat what it knows.
	LastSeen time.Time
}

// Watcher browses the LAN continuously for the nodes of one cluster.
type Watcher struct {
	clusterID string
	log       *slog.Logger
	changed   chan struct{}

	mu      sync.Mutex
	entries map[string]Peer // by DNS-SD instance name
}

// retry bounds how often a browse that cannot open its sockets is retried.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// Watch browses for "_homecloud._tcp" until ctx is done and keeps the
// nodes announcing clusterID. Announcements of other clusters and
// malformed ones are ignored (logged at debug level). The node's own
// announcement is included when it announces on the same interfaces: the
// Watcher reports the cluster as the LAN sees it, and the caller knows its
// own name.
func Watch(ctx context.Context, cfg Config, clusterID string) (*Watcher, error) {
	if clusterID == "" {
		return nil, errors.New("watch: empty cluster id")
	}
	ifaces, err := cfg.interfaces()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	w := newWatcher(cfg.logger(), clusterID)
	go w.run(ctx, ifaces)
	return w, nil
}

func newWatcher(log *slog.Logger, clusterID string) *Watcher {
	return &Watcher{
		clusterID: clusterID,
		log:       log,
		changed:   make(chan struct{}, 1),
		entries:   make(map[string]Peer),
	}
}

// Peers returns the nodes of the cluster seen and not yet expired or
// withdrawn, sorted by name. When two announcements claim one name, the
// one that arrived last wins (a warning was logged when they arrived).
func (w *Watcher) Peers() []Peer {
	w.mu.Lock()
	defer w.mu.Unlock()
	byName := make(map[string]Peer, len(w.entries))
	for _, p := range w.entries {
		if q, ok := byName[p.Name]; !ok || p.LastSeen.After(q.LastSeen) {
			byName[p.Name] = p
		}
	}
	out := make([]Peer, 0, len(byName))
	for _, p := range byName {
		p.Addrs = slices.Clone(p.Addrs)
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Changed receives a value after the peers changed; several changes
// between two reads make one value. Call Peers to see the new state. It is
// closed when the Watcher stops (its ctx is done); Peers is empty then.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

func (w *Watcher) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// run keeps a browse going until ctx is done. A browse that cannot open
// its sockets (no IPv6, interface gone) is retried with IPv4 only and then
// after a growing pause, so a late network does not end discovery.
func (w *Watcher) run(ctx context.Context, ifaces []net.Interface) {
	defer func() {
		w.mu.Lock()
		clear(w.entries)
		w.mu.Unlock()
		close(w.changed)
	}()
	wait := retryMin
	for ctx.Err() == nil {
		err := w.browse(ctx, ifaces, zeroconf.IPv4AndIPv6)
		if err != nil && ctx.Err() == nil {
			w.log.Debug("mdns: browse over IPv4 and IPv6 failed, trying IPv4 only", "err", err)
			err = w.browse(ctx, ifaces, zeroconf.IPv4)
		}
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("mdns: browse stopped, retrying", "interfaces", ifaceNames(ifaces), "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

func (w *Watcher) browse(ctx context.Context, ifaces []net.Interface, ipType zeroconf.IPType) error {
	entries := make(chan *zeroconf.ServiceEntry)
	removed := make(chan *zeroconf.ServiceEntry)
	stop := make(chan struct{})
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		for entries != nil || removed != nil {
			select {
			case e, ok := <-entries:
				if !ok {
					entries = nil
					continue
				}
				w.upsert(e, time.Now())
			case e, ok := <-removed:
				if !ok {
					removed = nil
					continue
				}
				w.remove(e.Instance, "withdrawn or expired")
			case <-stop:
				// Browse failed before it started its loop, which is
				// what closes the channels.
				return
			}
		}
	}()
	err := zeroconf.Browse(ctx, Service, Domain, entries, removed, zeroconf.SelectIfaces(ifaces), zeroconf.SelectIPTraffic(ipType))
	close(stop)
	<-consumed
	if err != nil {
		return fmt.Errorf("browse %s on %s: %w", Service, ifaceNames(ifaces), err)
	}
	return nil
}

// upsert records one reported entry, or drops it when it is not a valid
// announcement of this cluster.
func (w *Watcher) upsert(e *zeroconf.ServiceEntry, now time.Time) {
	info, err := parseTXT(e.Text)
	if err != nil {
		w.log.Debug("mdns: ignoring malformed announcement", "instance", e.Instance, "txt", e.Text, "err", err)
		w.remove(e.Instance, "now malformed")
		return
	}
	if info.ClusterID != w.clusterID {
		w.log.Debug("mdns: ignoring another cluster", "instance", e.Instance, "cluster", info.ClusterID)
		w.remove(e.Instance, "now in another cluster")
		return
	}
	addrs := make([]netip.Addr, 0, len(e.AddrIPv4)+len(e.AddrIPv6))
	for _, ip := range slices.Concat(e.AddrIPv4, e.AddrIPv6) {
		if a, ok := netip.AddrFromSlice(ip); ok && !slices.Contains(addrs, a.Unmap()) {
			addrs = append(addrs, a.Unmap())
		}
	}
	r, _ := parseRaftAddr(info.RaftAddr) // validated by parseTXT
	if info.RaftAddr, err = r.resolve(addrs, e.Port); err != nil {
		w.log.Debug("mdns: ignoring announcement without a dialable raft address", "instance", e.Instance, "err", err)
		w.remove(e.Instance, "no dialable address")
		return
	}
	p := Peer{Info: info, Addrs: addrs, LastSeen: now}

	w.mu.Lock()
	old, had := w.entries[e.Instance]
	w.entries[e.Instance] = p
	for inst, q := range w.entries {
		if q.Name == p.Name && q.Fingerprint != p.Fingerprint && inst != e.Instance {
			w.log.Warn("mdns: two announcements claim one name; the newer wins until TLS says otherwise",
				"name", p.Name, "instance", e.Instance, "fingerprint", p.Fingerprint, "other_instance", inst, "other_fingerprint", q.Fingerprint)
		}
	}
	w.mu.Unlock()
	if had && old.Fingerprint != p.Fingerprint {
		w.log.Warn("mdns: peer changed its certificate fingerprint", "name", p.Name, "instance", e.Instance, "old", old.Fingerprint, "new", p.Fingerprint)
	}
	if had && reflect.DeepEqual(old.Info, p.Info) && slices.Equal(old.Addrs, p.Addrs) {
		return
	}
	w.log.Debug("mdns: peer seen", "name", p.Name, "raft", p.RaftAddr, "state", p.State, "addrs", p.Addrs)
	w.notify()
}

func (w *Watcher) remove(instance, why string) {
	w.mu.Lock()
	p, had := w.entries[instance]
	delete(w.entries, instance)
	w.mu.Unlock()
	if had {
		w.log.Debug("mdns: peer gone", "name", p.Name, "instance", instance, "why", why)
		w.notify()
	}
}
