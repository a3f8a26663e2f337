package svc

import (
	"context"
	"fmt"

	"github.com/coreos/go-systemd/v22/dbus"
)

// SystemdManager drives units through systemd's D-Bus API.
type SystemdManager struct {
	conn *dbus.Conn
}

var _ Manager = (*SystemdManager)(nil)

// Systemd connects to systemd on the system bus. Close it when done.
func Systemd(ctx context.Context) (*SystemdManager, error) {
	conn, err := dbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to systemd on the system D-Bus: %w", err)
	}
	return &SystemdManager{conn: conn}, nil
}

// Close drops the D-Bus connection.
func (m *SystemdManager) Close() { m.conn.Close() }

// Start starts unit and waits for its job: for Type=notify units such as
// k3s.service that is when the daemon reports READY.
func (m *SystemdManager) Start(ctx context.Context, unit string) error {
	ch := make(chan string, 1)
	if _, err := m.conn.StartUnitContext(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("start %s: %w", unit, err)
	}
	return waitJob(ctx, "start", unit, ch)
}

// Stop stops unit and waits for its job.
func (m *SystemdManager) Stop(ctx context.Context, unit string) error {
	ch := make(chan string, 1)
	if _, err := m.conn.StopUnitContext(ctx, unit, "replace", ch); err != nil {
		return fmt.Errorf("stop %s: %w", unit, err)
	}
	return waitJob(ctx, "stop", unit, ch)
}

// Active reports whether the unit's ActiveState is active (or reloading).
func (m *SystemdManager) Active(ctx context.Context, unit string) (bool, error) {
	p, err := m.conn.GetUnitPropertyContext(ctx, unit, "ActiveState")
	if err != nil {
		return false, fmt.Errorf("state of %s: %w", unit, err)
	}
	s, ok := p.Value.Value().(string)
	if !ok {
		return false, fmt.Errorf("state of %s: ActiveState is %v, not a string", unit, p.Value)
	}
	return s == "active" || s == "reloading", nil
}

func waitJob(ctx context.Context, verb, unit string, ch <-chan string) error {
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s %s: job result %q (see journalctl -u %s)", verb, unit, res, unit)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", verb, unit, ctx.Err())
	}
}
