// Package svc starts and stops the system services the node service depends
// on (k3s, keepalived).
//
// The product uses Systemd: systemd owns the daemons, restarts them and
// collects their logs in the journal. Exec runs the same daemons as plain
// child processes; the cluster tests use it because one systemd per network
// namespace cannot run on the test machine (there PID 1 is not systemd and
// there is no system bus). The D-Bus path is exercised by the QEMU boot test.
package svc

import "context"

// Manager starts, stops and inspects units by name ("k3s.service").
// Start and Stop return once the unit has reached the requested state or
// failed to; both are idempotent.
type Manager interface {
	Start(ctx context.Context, unit string) error
	Stop(ctx context.Context, unit string) error
	Active(ctx context.Context, unit string) (bool, error)
}
