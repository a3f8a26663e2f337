// Package netcfg waits for the node's LAN address. The OS configures the
// link (systemd-networkd, from the file the builder baked in); the node
// service only needs to know when a usable address is there, and to say
// clearly why not when it never comes.
package netcfg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// Config says which address to wait for.
type Config struct {
	// Interface is the LAN interface; empty picks the first up Ethernet one.
	Interface string
	// Want is the static address; invalid means any global IPv4 (DHCP).
	Want   netip.Addr
	Logger *slog.Logger
	// ProbeAfter is how long to wait before probing for a DHCP server to
	// explain a missing lease; 0 disables the probe.
	ProbeAfter time.Duration
}

// Wait returns the interface name and address once the address is up.
func Wait(ctx context.Context, c Config) (string, netip.Addr, error) {
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	start := time.Now()
	probed := false
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		name, addr, err := find(c.Interface, c.Want)
		if err == nil {
			return name, addr, nil
		}
		if !probed && c.ProbeAfter > 0 && !c.Want.IsValid() && name != "" && time.Since(start) > c.ProbeAfter {
			probed = true
			log.Warn("no DHCP lease yet", "interface", name, "waited", time.Since(start).Round(time.Second), "probe", Probe(ctx, name))
		}
		select {
		case <-ctx.Done():
			return "", netip.Addr{}, fmt.Errorf("wait for address on %q: %w (last: %v)", c.Interface, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func find(ifname string, want netip.Addr) (string, netip.Addr, error) {
	ifi, err := pick(ifname)
	if err != nil {
		return "", netip.Addr{}, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return ifi.Name, netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if want.IsValid() && ip == want {
			return ifi.Name, ip, nil
		}
		if !want.IsValid() && ip.Is4() && ip.IsGlobalUnicast() {
			return ifi.Name, ip, nil
		}
	}
	if want.IsValid() {
		return ifi.Name, netip.Addr{}, fmt.Errorf("%s does not have %s yet", ifi.Name, want)
	}
	return ifi.Name, netip.Addr{}, fmt.Errorf("%s has no IPv4 address yet", ifi.Name)
}

func pick(name string) (*net.Interface, error) {
	if name != "" {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", name, err)
		}
		return ifi, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifs {
		f := ifs[i]
		if f.Flags&net.FlagLoopback == 0 && f.Flags&net.FlagUp != 0 && len(f.HardwareAddr) == 6 {
			return &f, nil
		}
	}
	return nil, errors.New("no Ethernet interface is up")
}

// Probe asks once whether a DHCP server answers on ifname, to tell a user
// with no lease whether the LAN or the node is at fault. nclient4's defaults
// wait about 35 s, so the timeout and retries are set explicitly.
func Probe(ctx context.Context, ifname string) string {
	c, err := nclient4.New(ifname, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(1))
	if err != nil {
		return "probe failed: " + err.Error()
	}
	defer c.Close()
	offer, err := c.DiscoverOffer(ctx)
	if err != nil {
		return "no DHCP server answered: check the cable and the router's DHCP"
	}
	return fmt.Sprintf("DHCP server %s offers %s: the OS has not taken it yet", offer.ServerIdentifier(), offer.YourIPAddr)
}
