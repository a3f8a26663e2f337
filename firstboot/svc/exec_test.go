package svc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func newExec(t *testing.T, units map[string][]string) *ExecManager {
	t.Helper()
	m := Exec(units, t.TempDir())
	t.Cleanup(func() {
		for u := range units {
			if err := m.Stop(context.Background(), u); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return m
}

func TestExecStartActiveStopRestart(t *testing.T) {
	ctx := context.Background()
	m := newExec(t, map[string][]string{
		"sleeper.service": {"/bin/sh", "-c", "echo started; exec sleep 60"},
	})
	const u = "sleeper.service"
	if ok, err := m.Active(ctx, u); err != nil || ok {
		t.Fatalf("Active before Start = %v, %v; want false, nil", ok, err)
	}
	if err := m.Start(ctx, u); err != nil {
		t.Fatal(err)
	}
	pid := m.PID(u)
	if !alive(pid) {
		t.Fatalf("pid %d not running after Start", pid)
	}
	if ok, err := m.Active(ctx, u); err != nil || !ok {
		t.Fatalf("Active after Start = %v, %v; want true, nil", ok, err)
	}
	if log := waitLines(m, u, "started", 1); !strings.Contains(log, "started") {
		t.Fatalf("the unit's output is not in its log: %q", log)
	}
	if pgid, _ := syscall.Getpgid(pid); pgid != pid {
		t.Errorf("process group %d, want its own (%d)", pgid, pid)
	}
	if err := m.Start(ctx, u); err != nil {
		t.Fatal(err)
	}
	if again := m.PID(u); again != pid {
		t.Fatalf("second Start started another process: %d, was %d", again, pid)
	}
	if err := m.Stop(ctx, u); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Fatalf("pid %d still running after Stop", pid)
	}
	if ok, _ := m.Active(ctx, u); ok {
		t.Fatal("Active after Stop = true")
	}
	if err := m.Stop(ctx, u); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := m.Start(ctx, u); err != nil {
		t.Fatal(err)
	}
	if re := m.PID(u); re == pid || !alive(re) {
		t.Fatalf("restart: pid %d (old %d) alive=%v", re, pid, alive(re))
	}
	if log := waitLines(m, u, "started", 2); strings.Count(log, "started") != 2 {
		t.Errorf("log has not 2 start lines (appended across restarts): %q", log)
	}
}

func TestExecStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	ctx := context.Background()
	const u = "stubborn.service"
	// The shell ignores TERM and has a child in its group: both must go.
	dir := t.TempDir()
	m := newExec(t, map[string][]string{u: {"/bin/sh", "-c", "trap '' TERM; sleep 60 & echo $! > " + filepath.Join(dir, "child") + "; wait"}})
	m.StopTimeout = 200 * time.Millisecond
	if err := m.Start(ctx, u); err != nil {
		t.Fatal(err)
	}
	pid := m.PID(u)
	var child int
	deadline := time.Now().Add(5 * time.Second)
	for child == 0 && time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, "child")); err == nil && len(b) > 1 {
			child = atoi(strings.TrimSpace(string(b)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if child == 0 {
		t.Fatal("child never started")
	}
	if err := m.Stop(ctx, u); err != nil {
		t.Fatal(err)
	}
	if alive(pid) {
		t.Errorf("leader %d survived Stop", pid)
	}
	// The child is reparented to init here, so give the reaper a moment.
	for i := 0; i < 100 && alive(child); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if st, err := os.ReadFile("/proc/" + itoa(child) + "/stat"); err == nil && !strings.Contains(string(st), ") Z") {
		t.Errorf("child %d of the group survived Stop", child)
	}
}

func TestExecCrashedUnitIsInactiveAndRestarts(t *testing.T) {
	ctx := context.Background()
	const u = "crash.service"
	m := newExec(t, map[string][]string{u: {"/bin/sh", "-c", "exit 3"}})
	if err := m.Start(ctx, u); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ok, _ := m.Active(ctx, u); !ok {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if ok, _ := m.Active(ctx, u); ok {
		t.Fatal("a unit whose process exited is still active")
	}
	if err := m.Start(ctx, u); err != nil {
		t.Fatalf("restart after crash: %v", err)
	}
}

func TestExecUnknownUnit(t *testing.T) {
	m := Exec(map[string][]string{}, t.TempDir())
	err := m.Start(context.Background(), "nope.service")
	if err == nil || !strings.Contains(err.Error(), "nope.service") {
		t.Fatalf("Start(unknown) = %v; want an error naming the unit", err)
	}
	if _, err := m.Active(context.Background(), "nope.service"); err == nil {
		t.Fatal("Active(unknown) = nil error")
	}
}

func TestExecMissingBinary(t *testing.T) {
	m := Exec(map[string][]string{"x.service": {"/nonexistent/daemon"}}, t.TempDir())
	err := m.Start(context.Background(), "x.service")
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Start = %v; want a not-exist error", err)
	}
}

// waitLines waits (boundedly) until the unit's log holds n lines with word:
// a process writes only once it gets to run.
func waitLines(m *ExecManager, unit, word string, n int) string {
	var log []byte
	for i := 0; i < 500 && strings.Count(string(log), word) < n; i++ {
		time.Sleep(10 * time.Millisecond)
		log, _ = os.ReadFile(filepath.Join(m.logDir, unit+".log"))
	}
	return string(log)
}
