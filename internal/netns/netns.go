// Package netns builds throwaway LANs out of Linux network namespaces: one
// namespace holding a bridge, and one namespace per host joined to it by a
// veth pair. The cluster and boot tests run real daemons in them. Nothing
// leaves the namespaces: the bridge has no uplink.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// Lab is one isolated LAN.
type Lab struct {
	ID       string
	Subnet   netip.Prefix
	BridgeNS string
	Gateway  netip.Addr // the bridge's own address, used as default route
	mu       sync.Mutex
	hosts    []*Host
	next     int
}

// Host is one namespace on the LAN with an eth0 and an address.
type Host struct {
	Name  string
	NS    string
	Iface string
	Addr  netip.Addr
	lab   *Lab
}

// Available says why labs cannot be made here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the ip command (package iproute2) is missing")
	}
	return nil
}

// New makes an empty LAN on subnet (e.g. 10.77.0.0/24, a range used only
// inside the namespaces). The bridge namespace takes the first address.
func New(ctx context.Context, subnet netip.Prefix) (*Lab, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	l := &Lab{ID: id, Subnet: subnet.Masked(), BridgeNS: "hc" + id + "br", Gateway: subnet.Masked().Addr().Next(), next: 10}
	steps := [][]string{
		{"netns", "add", l.BridgeNS},
		{"-n", l.BridgeNS, "link", "set", "lo", "up"},
		{"-n", l.BridgeNS, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"},
		{"-n", l.BridgeNS, "addr", "add", fmt.Sprintf("%s/%d", l.Gateway, subnet.Bits()), "dev", "br0"},
		{"-n", l.BridgeNS, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// AddHost adds a namespace with eth0 on the bridge and the next free address.
func (l *Lab) AddHost(ctx context.Context, name string) (*Host, error) {
	l.mu.Lock()
	l.next++
	n := l.next
	l.mu.Unlock()
	addr := l.Subnet.Addr()
	for i := 0; i < n; i++ {
		addr = addr.Next()
	}
	if !l.Subnet.Contains(addr) {
		return nil, fmt.Errorf("lab %s: subnet %s is full", l.ID, l.Subnet)
	}
	h := &Host{Name: name, NS: fmt.Sprintf("hc%s-%d", l.ID, n), Iface: "eth0", Addr: addr, lab: l}
	peer := fmt.Sprintf("hc%sv%d", l.ID, n)
	steps := [][]string{
		{"netns", "add", h.NS},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", l.BridgeNS, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
		{"-n", l.BridgeNS, "link", "set", peer, "master", "br0", "up"},
		{"-n", h.NS, "addr", "add", fmt.Sprintf("%s/%d", addr, l.Subnet.Bits()), "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
		// A default route like a real LAN's: multicast sends fail with
		// "network unreachable" without one. The gateway forwards nothing.
		{"-n", h.NS, "route", "add", "default", "via", l.Gateway.String()},
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Hosts returns the hosts added so far.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// Command runs a program inside the host's namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Run runs a command in the host's namespace and returns its output.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", name, h.NS, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// HasAddr reports whether addr is configured on the host's eth0.
func (h *Host) HasAddr(ctx context.Context, addr netip.Addr) (bool, error) {
	out, err := h.Run(ctx, "ip", "-o", "addr", "show", "dev", h.Iface)
	if err != nil {
		return false, err
	}
	return strings.Contains(out, " "+addr.String()+"/"), nil
}

// Close deletes every namespace of the lab; veths and addresses go with
// them. Processes started in them must be stopped by the caller first.
func (l *Lab) Close() error {
	var errs []error
	for _, h := range l.Hosts() {
		if err := ip(context.Background(), "netns", "del", h.NS); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
	}
	if err := ip(context.Background(), "netns", "del", l.BridgeNS); err != nil && !strings.Contains(err.Error(), "No such file") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func ip(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
