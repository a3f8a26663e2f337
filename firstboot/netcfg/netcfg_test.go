package netcfg

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestWaitLoopback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	name, addr, err := Wait(ctx, Config{Interface: "lo", Want: netip.MustParseAddr("127.0.0.1")})
	if err != nil || name != "lo" || addr.String() != "127.0.0.1" {
		t.Fatalf("Wait = %s %s %v", name, addr, err)
	}
}

func TestWaitTimesOutNamingTheAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, _, err := Wait(ctx, Config{Interface: "lo", Want: netip.MustParseAddr("127.9.9.9")})
	if err == nil || !strings.Contains(err.Error(), "127.9.9.9") {
		t.Fatalf("error %v does not name the missing address", err)
	}
	_, _, err = Wait(ctx, Config{Interface: "nosuch0"})
	if err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Fatalf("error %v does not name the interface", err)
	}
}
