package qemu

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshRun runs cmd as root on a base-image guest (Armbian's root/1234, which
// the base keeps on purpose) through a forwarded port.
func sshRun(ctx context.Context, port int, cmd string) (string, error) {
	cfg := &ssh.ClientConfig{
		User: "root",
		Auth: []ssh.AuthMethod{ssh.Password("1234")},
		// A VM this test just booted from a throwaway overlay.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         15 * time.Second,
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var lastErr error
	for ctx.Err() == nil {
		c, err := ssh.Dial("tcp", addr, cfg)
		if err == nil {
			s, err := c.NewSession()
			if err != nil {
				c.Close()
				return "", err
			}
			out, err := s.CombinedOutput(cmd)
			c.Close()
			return string(out), err
		}
		lastErr = err
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	return "", fmt.Errorf("ssh %s: %w (last: %v)", addr, ctx.Err(), lastErr)
}

// ifaceByMAC is a shell snippet setting $i to the guest's NIC with mac.
func ifaceByMAC(mac string) string {
	return fmt.Sprintf(`i=$(ip -o link | grep -i 'link/ether %s' | cut -d: -f2 | tr -d ' '); [ -n "$i" ] || { echo "no NIC with MAC %s"; ip -o link; exit 1; }; `, mac, mac)
}

// TestBootLAN boots two VMs on one LAN whose hub serves DHCP, and has one
// ping the all-nodes multicast group ff02::1 (the other must answer) and
// the other's leased IPv4 address. Nothing in the guests is reconfigured.
func TestBootLAN(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots two VMs under TCG (minutes)")
	}
	requireQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	lan, err := NewLAN(shortDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lan.Close() })
	if err := lan.ServeDHCP(netip.MustParsePrefix("10.77.0.1/24"), netip.MustParseAddr("10.77.0.100")); err != nil {
		t.Fatal(err)
	}

	base := bootConfig(t, ctx, "a")
	vms := map[string]*VM{}
	for _, name := range []string{"a", "b"} {
		cfg := base
		cfg.Name, cfg.WorkDir, cfg.LAN, cfg.Forward = name, shortDir(t), lan, map[int]int{22: 0}
		v, err := Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Kill() })
		vms[name] = v
	}
	for name, v := range vms {
		d := waitBoot(t, ctx, v, loginLine)
		t.Logf("lan_boot_login_seconds_%s=%.1f", name, d.Seconds())
	}

	a, b := vms["a"], vms["b"]
	out, err := sshRun(ctx, b.HostPort(22), ifaceByMAC(b.cfg.MAC)+`ip -6 -o addr show dev "$i" scope link`)
	if err != nil {
		t.Fatalf("b's LAN address: %v\n%s", err, out)
	}
	f := strings.Fields(out)
	if len(f) < 4 || !strings.HasPrefix(f[3], "fe80:") {
		t.Fatalf("b has no link-local address on its LAN NIC:\n%s", out)
	}
	bAddr, _, _ := strings.Cut(f[3], "/")

	out, err = sshRun(ctx, a.HostPort(22), ifaceByMAC(a.cfg.MAC)+`ping -6 -c 3 -w 15 -I "$i" ff02::1`)
	if !strings.Contains(out, "from "+bAddr) {
		t.Fatalf("a's ping to ff02::1 on the LAN got no answer from b (%s): %v\n%s", bAddr, err, out)
	}

	// networkd may still be asking when getty is up: poll for the lease.
	out, err = sshRun(ctx, b.HostPort(22), ifaceByMAC(b.cfg.MAC)+
		`for n in $(seq 60); do ip -4 -o addr show dev "$i" | grep -q 'inet 10\.77\.' && break; sleep 1; done; ip -4 -o addr show dev "$i"`)
	lease := lan.Leases()[b.cfg.MAC]
	if !lease.IsValid() || !strings.Contains(out, "inet "+lease.String()+"/24") {
		t.Fatalf("b's LAN NIC does not hold its DHCP lease %v: %v\n%s", lease, err, out)
	}
	out, err = sshRun(ctx, a.HostPort(22), `ping -c 3 -w 15 `+lease.String())
	if err != nil {
		t.Fatalf("a cannot ping b at %s: %v\n%s", lease, err, out)
	}
	if lan.Frames("a") == 0 || lan.Frames("b") == 0 {
		t.Errorf("hub counted %d frames from a, %d from b", lan.Frames("a"), lan.Frames("b"))
	}
}
