package svc

import (
	"context"
	"os"
	"testing"
	"time"
)

// The D-Bus path needs a booted systemd; the QEMU boot test covers it end to
// end. Here it only runs where a system bus exists.
func TestSystemdActiveOnRealBus(t *testing.T) {
	if _, err := os.Stat("/run/dbus/system_bus_socket"); err != nil {
		t.Skip("no system D-Bus (/run/dbus/system_bus_socket absent): systemd is not PID 1 here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := Systemd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ok, err := m.Active(ctx, "dbus.service")
	if err != nil || !ok {
		t.Fatalf("Active(dbus.service) = %v, %v; the bus we talk to runs on it", ok, err)
	}
	ok, err = m.Active(ctx, "homecloud-no-such-unit.service")
	if err != nil || ok {
		t.Fatalf("Active(missing unit) = %v, %v; want false, nil", ok, err)
	}
}
