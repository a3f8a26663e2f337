package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
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
	// browse does not report answers that repeat what it knows, but each
	// new browse (every rebrowse) reports every live announcement again.
	LastSeen time.Time
}

// Watcher browses the LAN continuously for the nodes of one cluster.
type Watcher struct {
	clusterID string
	log       *slog.Logger
	changed   chan struct{}

	mu      sync.Mutex
	entries map[string]Peer // by announcementKey
	names   map[string]int  // entries per node name
	refuted map[string]bool // by announcementKey: failed its proof
	full    bool            // refusing: warned once, not per packet of a flood
}

// Anyone on the LAN can announce anything, so the Watcher keeps every
// distinct announcement, and bounds what it keeps.
const (
	// maxEntries bounds memory and the work of each round of proofs. When
	// full, a new announcement takes the place of one that failed its
	// proof (see Proof), or is refused: a flood must not push out real nodes
	// that are known, and junk that came first must not keep out nodes
	// that boot later once it has been refuted; unrefuted junk expires
	// after maxTTL unless repeated.
	maxEntries = 256
	// maxTTL is the longest an announcement is kept without being heard
	// again, whatever TTL it claims: a one-off spoof with a huge TTL must
	// not stay for good. Nodes announce with TTL, no longer.
	maxTTL = 2 * time.Minute
	// rebrowse is how long one browse runs: it reports an entry only when
	// it changes, so a live node's repeated answers refresh nothing until
	// a new browse reports them afresh.
	rebrowse = maxTTL / 2
)

// announcementKey identifies one announcement: the DNS-SD instance name
// and the host's addresses. Keying by name alone let an announcement that
// claims a real node's name hide the real one; by instance alone, one
// that reuses its instance name from another host would.
func announcementKey(e *zeroconf.ServiceEntry) string {
	var b strings.Builder
	b.WriteString(e.Instance)
	for _, ip := range slices.Concat(e.AddrIPv4, e.AddrIPv6) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			b.WriteByte(' ')
			b.WriteString(a.Unmap().String())
		}
	}
	return b.String()
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
		names:     make(map[string]int),
		refuted:   make(map[string]bool),
	}
}

// Peers returns the announcements of the cluster seen and not yet
// expired or withdrawn, sorted by name. Several may claim one name: only
// a TLS handshake tells which, if any, is that node.
func (w *Watcher) Peers() []Peer {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, 0, len(w.entries))
	for k := range w.entries {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(strings.Compare(w.entries[a].Name, w.entries[b].Name), strings.Compare(a, b))
	})
	out := make([]Peer, 0, len(keys))
	for _, k := range keys {
		p := w.entries[k]
		p.Addrs = slices.Clone(p.Addrs)
		out = append(out, p)
	}
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
		clear(w.names)
		clear(w.refuted)
		w.mu.Unlock()
		close(w.changed)
	}()
	wait := retryMin
	for ctx.Err() == nil {
		bctx, cancel := context.WithTimeout(ctx, rebrowse)
		err := w.browse(bctx, ifaces, zeroconf.IPv4AndIPv6)
		if err != nil && bctx.Err() == nil {
			w.log.Debug("mdns: browse over IPv4 and IPv6 failed, trying IPv4 only", "err", err)
			err = w.browse(bctx, ifaces, zeroconf.IPv4)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		w.expire(time.Now())
		if err == nil { // ran its term
			wait = retryMin
			continue
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
				w.remove(announcementKey(e), "withdrawn or expired")
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
	key := announcementKey(e)
	info, err := parseTXT(e.Text)
	if err != nil {
		w.log.Debug("mdns: ignoring malformed announcement", "instance", e.Instance, "txt", e.Text, "err", err)
		w.remove(key, "now malformed")
		return
	}
	if info.ClusterID != w.clusterID {
		w.log.Debug("mdns: ignoring another cluster", "instance", e.Instance, "cluster", info.ClusterID)
		w.remove(key, "now in another cluster")
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
		w.remove(key, "no dialable address")
		return
	}
	p := Peer{Info: info, Addrs: addrs, LastSeen: now}

	w.mu.Lock()
	old, had := w.entries[key]
	if !had && len(w.entries) >= maxEntries {
		w.expireLocked(now)
	}
	if !had && len(w.entries) >= maxEntries {
		w.evictRefutedLocked()
	}
	if !had && len(w.entries) >= maxEntries {
		warn := !w.full
		w.full = true
		w.mu.Unlock()
		if warn {
			w.log.Warn("mdns: too many announcements, ignoring new ones", "limit", maxEntries, "name", p.Name, "instance", e.Instance, "addrs", addrs)
		}
		return
	}
	if !had {
		w.full = false
	}
	w.entries[key] = p
	if had && (old.Info != p.Info || !slices.Equal(old.Addrs, p.Addrs)) {
		delete(w.refuted, key) // a new claim: to be proved afresh
	}
	claims := w.names[p.Name]
	if had && old.Name != p.Name {
		w.forgetName(old.Name)
	}
	if !had || old.Name != p.Name {
		w.names[p.Name]++
	}
	w.mu.Unlock()
	if claims > 0 && (!had || old.Name != p.Name) {
		w.log.Warn("mdns: several announcements claim one name; TLS will tell which is the node",
			"name", p.Name, "instance", e.Instance, "addrs", addrs, "fingerprint", p.Fingerprint, "claims", claims+1)
	}
	if had && old.Fingerprint != p.Fingerprint {
		w.log.Warn("mdns: peer changed its certificate fingerprint", "name", p.Name, "instance", e.Instance, "old", old.Fingerprint, "new", p.Fingerprint)
	}
	if had && old.Info == p.Info && slices.Equal(old.Addrs, p.Addrs) {
		return
	}
	w.log.Debug("mdns: peer seen", "name", p.Name, "raft", p.RaftAddr, "state", p.State, "addrs", p.Addrs)
	w.notify()
}

func (w *Watcher) remove(key, why string) {
	w.mu.Lock()
	p, had := w.entries[key]
	if had {
		w.deleteLocked(key)
	}
	w.mu.Unlock()
	if had {
		w.log.Debug("mdns: peer gone", "name", p.Name, "announcement", key, "why", why)
		w.notify()
	}
}

// expire drops the announcements not heard for maxTTL.
func (w *Watcher) expire(now time.Time) {
	w.mu.Lock()
	n := w.expireLocked(now)
	w.mu.Unlock()
	if n > 0 {
		w.log.Debug("mdns: announcements expired", "count", n, "after", maxTTL)
		w.notify()
	}
}

func (w *Watcher) expireLocked(now time.Time) int {
	n := 0
	for k, p := range w.entries {
		if now.Sub(p.LastSeen) > maxTTL {
			w.deleteLocked(k)
			n++
		}
	}
	return n
}

// Proof records how the TLS proof of the announcements of name with this
// fingerprint and raft address went. Refuted ones may give their place to
// a new announcement when the table is full; they stay listed until then
// (a node still starting fails once and is tried again later), and a
// later success takes the mark off.
func (w *Watcher) Proof(name, fingerprint, raftAddr string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, p := range w.entries {
		if p.Name == name && p.Fingerprint == fingerprint && p.RaftAddr == raftAddr {
			if ok {
				delete(w.refuted, k)
			} else {
				w.refuted[k] = true
			}
		}
	}
}

// evictRefutedLocked drops the refuted announcement heard longest ago.
func (w *Watcher) evictRefutedLocked() {
	victim := ""
	for k := range w.refuted {
		if victim == "" || w.entries[k].LastSeen.Before(w.entries[victim].LastSeen) {
			victim = k
		}
	}
	if victim != "" {
		w.log.Debug("mdns: table full, dropping a refuted announcement", "announcement", victim)
		w.deleteLocked(victim)
	}
}

func (w *Watcher) deleteLocked(key string) {
	if p, ok := w.entries[key]; ok {
		delete(w.entries, key)
		delete(w.refuted, key)
		w.forgetName(p.Name)
	}
}

func (w *Watcher) forgetName(name string) {
	if w.names[name]--; w.names[name] <= 0 {
		delete(w.names, name)
	}
}
