package spec

import (
	"fmt"
	"net/netip"
	"strings"
)

// The addressing rules are in the package documentation (spec.go).

// Static reports whether nodes get static addresses.
func (s *Spec) Static() bool { return s.Network != "" && s.Network != "dhcp" }

// Prefix is the LAN: the static --network, or in DHCP mode the VIP's
// prefix (invalid when there is no VIP).
func (s *Spec) Prefix() netip.Prefix {
	if s.Static() {
		p, _ := netip.ParsePrefix(s.Network)
		return p
	}
	p, _ := netip.ParsePrefix(s.VIP)
	return p.Masked()
}

// GatewayAddr is --gateway parsed (invalid in DHCP mode).
func (s *Spec) GatewayAddr() netip.Addr {
	a, _ := netip.ParseAddr(s.Gateway)
	return a
}

// VIPAddr is the virtual IP, without prefix (invalid when there is none).
func (s *Spec) VIPAddr() netip.Addr {
	if p, err := netip.ParsePrefix(s.VIP); err == nil {
		return p.Addr()
	}
	a, _ := netip.ParseAddr(s.VIP)
	return a
}

// NodeName is the host name of node i (1-based).
func (s *Spec) NodeName(i int) string { return fmt.Sprintf("%s-node%d", s.Name, i) }

// DataDiskNodeName is the name of the node --data-disk-node names, or ""
// when the cluster picks it.
func (s *Spec) DataDiskNodeName() string {
	if s.DataDiskNode < 1 {
		return ""
	}
	return s.NodeName(s.DataDiskNode)
}

// NodeNames are the host names of all nodes, node1 first.
func (s *Spec) NodeNames() []string {
	names := make([]string, s.Nodes)
	for i := range names {
		names[i] = s.NodeName(i + 1)
	}
	return names
}

// NodeAddrs are the static addresses of all nodes, node1 first; nil in
// DHCP mode. Meaningful only after Validate succeeded.
func (s *Spec) NodeAddrs() []netip.Addr {
	if !s.Static() {
		return nil
	}
	a, err := netip.ParseAddr(s.FirstIP)
	if err != nil {
		return nil
	}
	addrs := make([]netip.Addr, 0, s.Nodes)
	for range s.Nodes {
		addrs = append(addrs, a)
		a = a.Next()
	}
	return addrs
}

// validateNetwork checks the addressing flags together; see the
// decisions above.
func (s *Spec) validateNetwork() []error {
	if !s.Static() {
		return s.validateDHCP()
	}
	p, err := netip.ParsePrefix(s.Network)
	if err != nil {
		return []error{usagef("--network", "%q: want \"dhcp\" or an IPv4 CIDR such as 192.168.1.0/24", s.Network)}
	}
	if err := checkPrefix("--network "+s.Network, p); err != nil {
		return []error{err}
	}
	var errs []error
	gw, gwOK := addrIn(&errs, "--gateway", s.Gateway, p, "your router's address", add(p.Addr(), 1))
	first, firstOK := addrIn(&errs, "--first-ip", s.FirstIP, p,
		"the address of node 1 in a free range outside your router's DHCP pool", add(p.Addr(), 11))
	bcast := broadcast(p)
	// The nodes' range, when it can be known; checks against it are
	// skipped otherwise, the missing piece has its own error.
	var last netip.Addr
	if firstOK && s.Nodes >= 1 {
		if room := int(u32(bcast) - u32(first)); s.Nodes > room {
			errs = append(errs, usagef("--nodes", "%d: from --first-ip %s, %s has room for %d nodes (up to %s): lower --nodes or --first-ip, or use a larger --network",
				s.Nodes, first, p, room, bcast.Prev()))
		} else {
			last = add(first, uint32(s.Nodes-1))
		}
	}
	inRange := func(a netip.Addr) (string, bool) {
		if !last.IsValid() || a.Less(first) || last.Less(a) {
			return "", false
		}
		return s.NodeName(int(u32(a)-u32(first)) + 1), true
	}
	span := first.String() + "–" + last.String()
	if gwOK {
		if node, clash := inRange(gw); clash {
			errs = append(errs, usagef("--gateway", "%s: is also the address of %s (nodes use %s): move --first-ip past the gateway", gw, node, span))
		}
	}
	if s.VIP == "" {
		return errs
	}
	vip, err := parseVIP(s.VIP)
	if err != nil {
		return append(errs, err)
	}
	if vip.Bits() != vip.Addr().BitLen() && vip.Bits() != p.Bits() {
		return append(errs, usagef("--vip", "%s: prefix /%d differs from --network %s: give the address alone", s.VIP, vip.Bits(), p))
	}
	va := vip.Addr()
	switch {
	case !p.Contains(va):
		errs = append(errs, usagef("--vip", "%s: outside --network %s: pick an unused address inside it", va, p))
	case va == p.Addr():
		errs = append(errs, usagef("--vip", "%s: is the network's own address: pick an unused host address inside %s", va, p))
	case va == bcast:
		errs = append(errs, usagef("--vip", "%s: is the broadcast address of %s: pick an unused host address inside it", va, p))
	case gwOK && va == gw:
		errs = append(errs, usagef("--vip", "%s: same as --gateway: pick an unused address", va))
	default:
		if node, clash := inRange(va); clash {
			errs = append(errs, usagef("--vip", "%s: is also the address of %s (nodes use %s): pick an address outside that range", va, node, span))
		}
	}
	return errs
}

func (s *Spec) validateDHCP() []error {
	var errs []error
	for _, f := range []struct{ name, val string }{{"--gateway", s.Gateway}, {"--first-ip", s.FirstIP}} {
		if f.val != "" {
			errs = append(errs, usagef(f.name, "%s: only for a static --network (with dhcp the router hands addresses out): remove it, or give --network as a CIDR such as 192.168.1.0/24", f.val))
		}
	}
	if s.VIP == "" {
		return errs
	}
	if _, err := netip.ParseAddr(s.VIP); err == nil {
		return append(errs, usagef("--vip", "%s: with --network dhcp give the LAN's prefix too (e.g. --vip %s/24) and keep the address outside your router's DHCP pool", s.VIP, s.VIP))
	}
	vip, err := parseVIP(s.VIP)
	if err != nil {
		return append(errs, err)
	}
	if err := checkPrefix("--vip "+s.VIP, vip.Masked()); err != nil {
		return append(errs, err)
	}
	p := vip.Masked()
	switch vip.Addr() {
	case p.Addr():
		errs = append(errs, usagef("--vip", "%s: is the network's own address: pick an unused host address", s.VIP))
	case broadcast(p):
		errs = append(errs, usagef("--vip", "%s: is the broadcast address: pick an unused host address", s.VIP))
	}
	return errs
}

// parseVIP accepts an address or address/prefix.
func parseVIP(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is4() {
			return netip.Prefix{}, usagef("--vip", "%q: want an IPv4 address such as 192.168.1.250", v)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, usagef("--vip", "%q: want an IPv4 address such as 192.168.1.250", v)
	}
	return netip.PrefixFrom(a, 32), nil
}

func checkPrefix(field string, p netip.Prefix) error {
	if !p.Addr().Is4() {
		return usagef(field, "IPv6 is not supported yet: give an IPv4 network, or dhcp")
	}
	if !strings.Contains(field, "--vip") && p != p.Masked() {
		return usagef(field, "host bits are set: did you mean %s?", p.Masked())
	}
	if p.Bits() > 30 {
		return usagef(field, "/%d has no room for a cluster: use your LAN's prefix, e.g. /24", p.Bits())
	}
	return nil
}

// addrIn parses a required host address inside p.
func addrIn(errs *[]error, field, v string, p netip.Prefix, what string, example netip.Addr) (netip.Addr, bool) {
	if v == "" {
		*errs = append(*errs, usagef(field, "missing: a static --network needs %s, e.g. %s %s", what, field, example))
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		*errs = append(*errs, usagef(field, "%q: want an IPv4 address such as %s", v, example))
		return netip.Addr{}, false
	}
	switch {
	case !p.Contains(a):
		*errs = append(*errs, usagef(field, "%s: outside --network %s: give an address inside it", a, p))
	case a == p.Addr():
		*errs = append(*errs, usagef(field, "%s: is the network's own address, not a host in %s", a, p))
	case a == broadcast(p):
		*errs = append(*errs, usagef(field, "%s: is the broadcast address of %s, not a host", a, p))
	default:
		return a, true
	}
	return netip.Addr{}, false
}

func broadcast(p netip.Prefix) netip.Addr {
	return from32(u32(p.Masked().Addr()) | (uint32(1)<<(32-p.Bits()) - 1))
}

// add is a+n; IPv4 only, wrapping is prevented by the callers' checks.
func add(a netip.Addr, n uint32) netip.Addr { return from32(u32(a) + n) }

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func from32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
