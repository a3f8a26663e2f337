package qemu

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// dhcpExchange sends msg from a fake VM port as a client would (0.0.0.0 →
// broadcast) and returns the server's parsed answer.
func dhcpExchange(t *testing.T, l *LAN, c *net.UnixConn, msg *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	t.Helper()
	frame := udpFrame(msg.ClientHWAddr, netip.IPv4Unspecified(), 68, 67, msg.ToBytes())
	send(t, l, c, frame)
	var got []byte
	for got == nil {
		f, err := recvFrame(c, 5*time.Second)
		if err != nil {
			t.Fatalf("no answer to DHCP %s: %v", msg.MessageType(), err)
		}
		// Other VMs' broadcasts reach this port too, as on any switch.
		if net.HardwareAddr(f[6:12]).String() == routerMAC.String() {
			got = f
		}
	}
	if checksum(got[14:34], 0) != 0 {
		t.Errorf("reply's IPv4 header checksum is wrong")
	}
	payload, ok := udpPayload(got, 68)
	if !ok {
		t.Fatalf("reply is not UDP to port 68: % x", got[:42])
	}
	if sport := binary.BigEndian.Uint16(got[34:36]); sport != 67 {
		t.Errorf("reply from UDP port %d, want 67", sport)
	}
	reply, err := dhcpv4.FromBytes(payload)
	if err != nil {
		t.Fatal(err)
	}
	if reply.TransactionID != msg.TransactionID {
		t.Errorf("reply xid %s, want %s", reply.TransactionID, msg.TransactionID)
	}
	return reply
}

func TestLANDHCP(t *testing.T) {
	l, err := NewLAN(shortDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	router := netip.MustParsePrefix("10.77.0.1/24")
	if err := l.ServeDHCP(router, netip.MustParseAddr("10.77.0.100")); err != nil {
		t.Fatal(err)
	}
	a, b := fakePort(t, l, "a"), fakePort(t, l, "b")
	macA, _ := net.ParseMAC("02:00:00:00:00:0a")
	macB, _ := net.ParseMAC("02:00:00:00:00:0b")

	// The DORA of a first boot.
	disc, err := dhcpv4.NewDiscovery(macA)
	if err != nil {
		t.Fatal(err)
	}
	offer := dhcpExchange(t, l, a, disc)
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.Equal(net.ParseIP("10.77.0.100")) {
		t.Fatalf("offer: %s of %s, want OFFER of 10.77.0.100", offer.MessageType(), offer.YourIPAddr)
	}
	if r := offer.Router(); len(r) != 1 || !r[0].Equal(net.ParseIP("10.77.0.1")) {
		t.Errorf("router option %v, want 10.77.0.1", r)
	}
	if m := offer.SubnetMask(); m.String() != net.CIDRMask(24, 32).String() {
		t.Errorf("subnet mask %s, want /24", m)
	}
	if id := offer.ServerIdentifier(); !id.Equal(net.ParseIP("10.77.0.1")) {
		t.Errorf("server identifier %s, want 10.77.0.1", id)
	}
	req, err := dhcpv4.NewRequestFromOffer(offer)
	if err != nil {
		t.Fatal(err)
	}
	ack := dhcpExchange(t, l, a, req)
	if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		t.Fatalf("request: %s of %s, want ACK of %s", ack.MessageType(), ack.YourIPAddr, offer.YourIPAddr)
	}

	// Another VM gets the next address; the first keeps its own.
	discB, _ := dhcpv4.NewDiscovery(macB)
	if o := dhcpExchange(t, l, b, discB); !o.YourIPAddr.Equal(net.ParseIP("10.77.0.101")) {
		t.Errorf("b offered %s, want 10.77.0.101", o.YourIPAddr)
	}
	if o := dhcpExchange(t, l, a, disc); !o.YourIPAddr.Equal(net.ParseIP("10.77.0.100")) {
		t.Errorf("a offered %s on its second discover, want its lease 10.77.0.100", o.YourIPAddr)
	}

	// Asking for an address that is not its lease (a stale one) gets a NAK.
	stale, _ := dhcpv4.NewDiscovery(macA, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.77.0.50"))))
	if r := dhcpExchange(t, l, a, stale); r.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("request for a stale address got %s, want NAK", r.MessageType())
	}

	leases := l.Leases()
	if leases[macA.String()] != netip.MustParseAddr("10.77.0.100") || leases[macB.String()] != netip.MustParseAddr("10.77.0.101") {
		t.Errorf("Leases() = %v", leases)
	}
}

func TestServeDHCPRejects(t *testing.T) {
	l, err := NewLAN(shortDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, c := range []struct{ router, pool string }{
		{"10.77.0.1/24", "10.78.0.100"}, // pool outside
		{"10.77.0.1/24", "10.77.0.1"},   // pool is the router
		{"fd00::1/64", "fd00::100"},     // IPv6
		{"10.77.0.1/31", "10.77.0.0"},   // no room
	} {
		if err := l.ServeDHCP(netip.MustParsePrefix(c.router), netip.MustParseAddr(c.pool)); err == nil {
			t.Errorf("ServeDHCP(%s, %s) succeeded", c.router, c.pool)
		}
	}
}

func TestBroadcastOf(t *testing.T) {
	for p, want := range map[string]string{"10.77.0.1/24": "10.77.0.255", "192.168.4.9/22": "192.168.7.255"} {
		if got := broadcastOf(netip.MustParsePrefix(p)); got.String() != want {
			t.Errorf("broadcastOf(%s) = %s, want %s", p, got, want)
		}
	}
}
