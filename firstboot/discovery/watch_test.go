package discovery

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// The browse reports an entry again only when it changes, so the real
// node's unchanged answers never come back after a spoof: the spoof must
// not replace it.
func TestWatcherKeepsShadowedNode(t *testing.T) {
	w := newWatcher(slog.New(slog.DiscardHandler), "c0ffee")
	t0 := time.Now()
	real := info("node2")
	real.RaftAddr = "10.77.1.12:7373"
	w.upsert(entry("node2", real, "10.77.1.12"), t0)
	rogue := info("node2")
	rogue.Fingerprint = fpB
	rogue.RaftAddr = "10.77.1.66:7373"
	w.upsert(entry("x", rogue, "10.77.1.66"), t0.Add(time.Second))
	// Same instance name as the real node, from another host.
	rogue2 := rogue
	rogue2.RaftAddr = "10.77.1.67:7373"
	w.upsert(entry("node2", rogue2, "10.77.1.67"), t0.Add(2*time.Second))

	var got []string
	for _, p := range w.Peers() {
		got = append(got, p.Name+" "+p.RaftAddr)
	}
	slices.Sort(got)
	want := []string{"node2 10.77.1.12:7373", "node2 10.77.1.66:7373", "node2 10.77.1.67:7373"}
	if !slices.Equal(got, want) {
		t.Fatalf("Peers() = %v, want every claim of the name: %v", got, want)
	}
}

func TestWatcherCapsEntries(t *testing.T) {
	w := newWatcher(slog.New(slog.DiscardHandler), "c0ffee")
	t0 := time.Now()
	add := func(i int, at time.Time) {
		in := info(fmt.Sprintf("n%d", i))
		in.RaftAddr = fmt.Sprintf("10.77.%d.%d:7373", i/250, i%250+1)
		w.upsert(entry(fmt.Sprintf("i%d", i), in, "10.77.1.66"), at)
	}
	for i := range maxEntries + 50 {
		add(i, t0)
	}
	ps := w.Peers()
	if len(ps) != maxEntries {
		t.Fatalf("kept %d announcements, want the cap %d", len(ps), maxEntries)
	}
	// Those known when the table filled stay: a flood cannot push them out.
	for _, p := range ps {
		var i int
		if _, err := fmt.Sscanf(p.Name, "n%d", &i); err != nil || i >= maxEntries {
			t.Fatalf("kept %s, want only the first %d", p.Name, maxEntries)
		}
	}
	// An update of a known announcement is not a new one.
	in := info("n0")
	in.RaftAddr = "10.77.0.1:7373"
	in.State = StateMember
	w.upsert(entry("i0", in, "10.77.1.66"), t0.Add(time.Second))
	if p := w.Peers()[0]; p.Name != "n0" || p.State != StateMember {
		t.Fatalf("update when full: first peer = %s/%s, want n0/member", p.Name, p.State)
	}
	// Once the junk has not been heard for maxTTL, room is made.
	add(maxEntries+100, t0.Add(maxTTL+time.Minute))
	if ps := w.Peers(); len(ps) != 1 || ps[0].Name != fmt.Sprintf("n%d", maxEntries+100) {
		t.Fatalf("after expiry: %v, want only the newcomer", names(ps))
	}
}

// Junk that filled the table before the nodes booted must not keep them
// out once their proofs failed; an unrefuted announcement is never pushed
// out, and an announcement that changes is to be proved afresh.
func TestWatcherRefutedMakeRoom(t *testing.T) {
	w := newWatcher(slog.New(slog.DiscardHandler), "c0ffee")
	t0 := time.Now()
	junk := func(i int) Info {
		in := info(fmt.Sprintf("n%d", i))
		in.RaftAddr = fmt.Sprintf("10.77.%d.%d:7373", i/250, i%250+1)
		return in
	}
	for i := range maxEntries {
		w.upsert(entry(fmt.Sprintf("i%d", i), junk(i), "10.77.1.66"), t0)
	}
	for i := range maxEntries - 1 { // all but the last fail their proof
		in := junk(i)
		w.Proof(in.Name, in.Fingerprint, in.RaftAddr, false)
	}
	// One failed once, still starting, and then proved itself.
	started := junk(1)
	w.Proof(started.Name, started.Fingerprint, started.RaftAddr, true)
	// The first refuted one announces anew, with another address: it is
	// no longer refuted.
	changed := junk(0)
	changed.RaftAddr = "10.77.9.9:7373"
	w.upsert(entry("i0", changed, "10.77.1.66"), t0.Add(time.Second))

	late := info("node2")
	late.RaftAddr = "10.77.1.12:7373"
	w.upsert(entry("node2", late, "10.77.1.12"), t0.Add(2*time.Second))
	ps := w.Peers()
	if len(ps) != maxEntries {
		t.Fatalf("kept %d announcements, want the cap %d", len(ps), maxEntries)
	}
	have := map[string]bool{}
	for _, p := range ps {
		have[p.Name] = true
	}
	for _, name := range []string{"node2", "n0", "n1", fmt.Sprintf("n%d", maxEntries-1)} {
		if !have[name] {
			t.Errorf("%s is not kept: the late node must take a refuted one's place, not an unrefuted or proved one's", name)
		}
	}
	// Once every refuted one has made room, the table refuses again.
	for i := range maxEntries {
		w.upsert(entry(fmt.Sprintf("j%d", i), junk(1000+i), "10.77.1.67"), t0.Add(3*time.Second))
	}
	have = map[string]bool{}
	for _, p := range w.Peers() {
		have[p.Name] = true
	}
	for _, name := range []string{"node2", "n0", "n1", fmt.Sprintf("n%d", maxEntries-1)} {
		if !have[name] {
			t.Errorf("after a second flood, %s is gone: only refuted announcements make room", name)
		}
	}
}

// A huge announced TTL is not honoured: an announcement not heard again
// goes after maxTTL, a live one (re-reported by each new browse) stays.
func TestWatcherExpiresSilentAnnouncements(t *testing.T) {
	w := newWatcher(slog.New(slog.DiscardHandler), "c0ffee")
	t0 := time.Now()
	real := info("node1")
	rogue := info("node1")
	rogue.Fingerprint = fpB
	rogue.RaftAddr = "10.77.1.66:7373"
	spoof := entry("x", rogue, "10.77.1.66")
	spoof.Expiry = t0.Add(1000 * time.Hour)
	w.upsert(spoof, t0)
	for at := t0; at.Before(t0.Add(3 * maxTTL)); at = at.Add(rebrowse) {
		w.upsert(entry("node1", real, "10.77.1.11"), at)
		w.expire(at)
	}
	ps := w.Peers()
	if len(ps) != 1 || ps[0].Fingerprint != fpA {
		t.Fatalf("Peers() = %v, want only the live node1", ps)
	}
}
