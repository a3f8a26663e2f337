package qemu

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// dhcpLease is long enough that no test sees a renewal go wrong.
const dhcpLease = 12 * time.Hour

// routerMAC is the MAC the LAN's DHCP server answers from.
var routerMAC = net.HardwareAddr{0x02, 0x48, 0x00, 0x00, 0x00, 0x01}

// dhcpServer hands out IPv4 leases the way a home router does; it routes
// nothing. Guarded by LAN.mu.
type dhcpServer struct {
	router netip.Prefix // its own address and the LAN's prefix
	next   netip.Addr   // next address to lease
	leases map[string]netip.Addr
}

// ServeDHCP makes the LAN answer DHCP like the home router the images
// expect: leases from poolStart upwards (one per MAC, kept for the LAN's
// life, so a restarted VM gets its address back), router.Addr() as the
// default gateway and server. Nothing answers at that address otherwise.
func (l *LAN) ServeDHCP(router netip.Prefix, poolStart netip.Addr) error {
	a := router.Addr()
	if !a.Is4() || !poolStart.Is4() || !router.Contains(poolStart) || poolStart == a || router.Bits() > 30 {
		return fmt.Errorf("qemu: LAN DHCP: router %s, pool from %s: want an IPv4 router address/prefix (like 10.77.0.1/24) and a pool start inside it", router, poolStart)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dhcp = &dhcpServer{router: router, next: poolStart, leases: map[string]netip.Addr{}}
	return nil
}

// Leases are the addresses handed out so far, by MAC.
func (l *LAN) Leases() map[string]netip.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[string]netip.Addr{}
	if l.dhcp != nil {
		for k, v := range l.dhcp.leases {
			m[k] = v
		}
	}
	return m
}

// answer replies to a DHCP client frame on p's socket. Frames that are not
// DHCP requests are ignored. Called with l.mu held.
func (s *dhcpServer) answer(p *port, frame []byte) {
	payload, ok := udpPayload(frame, 67)
	if !ok {
		return
	}
	req, err := dhcpv4.FromBytes(payload)
	if err != nil || req.OpCode != dhcpv4.OpcodeBootRequest {
		return
	}
	reply, err := s.reply(req)
	if err != nil || reply == nil {
		return
	}
	out := udpFrame(routerMAC, s.router.Addr(), 67, 68, reply.ToBytes())
	syscall.Sendto(p.fd, out, syscall.MSG_DONTWAIT, &syscall.SockaddrUnix{Name: p.path})
}

func (s *dhcpServer) reply(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
	mac := req.ClientHWAddr.String()
	lease, ok := s.leases[mac]
	if !ok {
		if s.next == s.router.Addr() {
			s.next = s.next.Next()
		}
		if !s.router.Contains(s.next) || s.next == broadcastOf(s.router) {
			return nil, fmt.Errorf("pool exhausted")
		}
		lease, s.next = s.next, s.next.Next()
		s.leases[mac] = lease
	}
	var mt dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		mt = dhcpv4.MessageTypeAck
		want := req.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = req.ClientIPAddr
		}
		if w, ok := netip.AddrFromSlice(want.To4()); ok && w.IsValid() && !w.IsUnspecified() && w != lease {
			mt = dhcpv4.MessageTypeNak // asks for another address: start over
		}
	default:
		return nil, nil // release, decline, inform: nothing to say
	}
	r := s.router.Addr().AsSlice()
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(r),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(r)),
	}
	if mt != dhcpv4.MessageTypeNak {
		mods = append(mods,
			dhcpv4.WithYourIP(lease.AsSlice()),
			dhcpv4.WithNetmask(net.CIDRMask(s.router.Bits(), 32)),
			dhcpv4.WithRouter(r),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(dhcpLease)))
	}
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

func broadcastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])|host)
	return netip.AddrFrom4(b)
}

// udpPayload returns the payload of an Ethernet/IPv4/UDP frame sent to
// dstPort.
func udpPayload(frame []byte, dstPort uint16) ([]byte, bool) {
	if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:14]) != 0x0800 {
		return nil, false
	}
	ip := frame[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != syscall.IPPROTO_UDP || len(ip) < ihl+8 {
		return nil, false
	}
	udp := ip[ihl:]
	n := int(binary.BigEndian.Uint16(udp[4:6]))
	if binary.BigEndian.Uint16(udp[2:4]) != dstPort || n < 8 || n > len(udp) {
		return nil, false
	}
	return udp[8:n], true
}

// udpFrame wraps payload in UDP, IPv4 and Ethernet headers, broadcast at
// both layers: every DHCP client accepts that, configured or not.
func udpFrame(srcMAC net.HardwareAddr, src netip.Addr, srcPort, dstPort uint16, payload []byte) []byte {
	const ipLen, udpLen = 20, 8
	f := make([]byte, 14+ipLen+udpLen+len(payload))
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:14], 0x0800)

	ip := f[14 : 14+ipLen]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(ipLen+udpLen+len(payload)))
	ip[8] = 64 // TTL
	ip[9] = syscall.IPPROTO_UDP
	s4, d4 := src.As4(), [4]byte{255, 255, 255, 255}
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], checksum(ip, 0))

	udp := f[14+ipLen:]
	binary.BigEndian.PutUint16(udp[0:2], srcPort)
	binary.BigEndian.PutUint16(udp[2:4], dstPort)
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpLen+len(payload)))
	copy(udp[8:], payload)
	// Pseudo-header: addresses, protocol, UDP length.
	pseudo := uint32(syscall.IPPROTO_UDP) + uint32(udpLen+len(payload))
	for i := 12; i < 20; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(ip[i : i+2]))
	}
	c := checksum(udp, pseudo)
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP over IPv4
	}
	binary.BigEndian.PutUint16(udp[6:8], c)
	return f
}

// checksum is the Internet checksum (RFC 1071) of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i : i+2]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
