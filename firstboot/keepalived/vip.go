package keepalived

import (
	"fmt"
	"net"
	"net/netip"
)

// HoldsVIP reports whether vip is configured on iface in this process's
// network namespace.
func HoldsVIP(iface string, vip netip.Addr) (bool, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return false, fmt.Errorf("VIP check: %w", err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return false, fmt.Errorf("VIP check on %s: %w", iface, err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == vip.Unmap() {
			return true, nil
		}
	}
	return false, nil
}
