package svc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// DefaultStopTimeout bounds how long Stop waits after SIGTERM before it
// sends SIGKILL, like systemd's TimeoutStopSec.
const DefaultStopTimeout = 10 * time.Second

// ExecManager runs each unit as a child process in its own process group.
// It stands in for systemd where none runs (see the package comment).
type ExecManager struct {
	units  map[string][]string
	logDir string
	// StopTimeout is the wait between SIGTERM and SIGKILL; zero means
	// DefaultStopTimeout.
	StopTimeout time.Duration

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result, valid after done
}

var _ Manager = (*ExecManager)(nil)

// Exec returns a manager that starts units[unit] (an argv) for each unit,
// appending its stdout and stderr to logDir/<unit>.log.
func Exec(units map[string][]string, logDir string) *ExecManager {
	u := make(map[string][]string, len(units))
	for k, v := range units {
		u[k] = append([]string(nil), v...)
	}
	return &ExecManager{units: u, logDir: logDir, procs: map[string]*proc{}}
}

// Start starts the unit's process unless it is already running. The
// process outlives ctx: ctx only bounds the start itself.
func (m *ExecManager) Start(ctx context.Context, unit string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start %s: %w", unit, err)
	}
	argv, ok := m.units[unit]
	if !ok || len(argv) == 0 {
		return fmt.Errorf("start %s: no command configured for this unit", unit)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.procs[unit]; p != nil && !p.exited() {
		return nil
	}
	if err := os.MkdirAll(m.logDir, 0o755); err != nil {
		return fmt.Errorf("start %s: %w", unit, err)
	}
	logPath := filepath.Join(m.logDir, unit+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("start %s: %w", unit, err)
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Children die with the node service: where Exec stands in for systemd
	// (tests), a killed node service is a node losing power, and a unit
	// left behind would hold its ports against the restarted node.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s (%s): %w", unit, argv[0], err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.procs[unit] = p
	return nil
}

// Stop sends SIGTERM to the unit's process, waits up to StopTimeout (or
// ctx) for it to exit, then SIGKILLs its whole process group. Stopping a
// unit that is not running is not an error.
func (m *ExecManager) Stop(ctx context.Context, unit string) error {
	m.mu.Lock()
	p := m.procs[unit]
	m.mu.Unlock()
	if p == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	if p.exited() {
		// It died by itself; its PID may already belong to someone else.
		return nil
	}
	{
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop %s: signal pid %d: %w", unit, pid, err)
		}
		bound := m.StopTimeout
		if bound <= 0 {
			bound = DefaultStopTimeout
		}
		t := time.NewTimer(bound)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
		case <-ctx.Done():
		}
	}
	// Whatever the leader left behind in its group goes too, as systemd's
	// KillMode=control-group would do.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: kill group %d: %w", unit, pid, err)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		return fmt.Errorf("stop %s: pid %d not reaped: %w", unit, pid, ctx.Err())
	}
	return nil
}

// Active reports whether the unit's process is running.
func (m *ExecManager) Active(ctx context.Context, unit string) (bool, error) {
	if _, ok := m.units[unit]; !ok {
		return false, fmt.Errorf("state of %s: no command configured for this unit", unit)
	}
	m.mu.Lock()
	p := m.procs[unit]
	m.mu.Unlock()
	return p != nil && !p.exited(), nil
}

// PID returns the PID of the unit's running process, or 0.
func (m *ExecManager) PID(unit string) int {
	m.mu.Lock()
	p := m.procs[unit]
	m.mu.Unlock()
	if p == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
