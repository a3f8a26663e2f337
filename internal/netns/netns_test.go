package netns

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestLabHostsReachEachOtherOnly(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lab, err := New(ctx, netip.MustParsePrefix("10.77.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Error(err)
		}
		out, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(out), "hc"+lab.ID) {
			t.Errorf("namespaces left behind: %s", out)
		}
	})
	a, err := lab.AddHost(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := lab.AddHost(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if a.Addr == b.Addr || !lab.Subnet.Contains(a.Addr) {
		t.Fatalf("addresses %s %s", a.Addr, b.Addr)
	}
	if out, err := a.Run(ctx, "ping", "-c", "1", "-W", "2", b.Addr.String()); err != nil {
		t.Fatalf("a cannot reach b on the lab LAN: %v %s", err, out)
	}
	ok, err := b.HasAddr(ctx, b.Addr)
	if err != nil || !ok {
		t.Fatalf("HasAddr(own) = %v, %v", ok, err)
	}
}
