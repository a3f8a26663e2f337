package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds on QEMU's own reactions; a guest's boot is bounded by the caller.
const (
	qmpReadyTimeout = 30 * time.Second
	quitTimeout     = 10 * time.Second
)

// VM is one running qemu-system-aarch64 process.
type VM struct {
	StartedAt time.Time // just before QEMU was started; WaitConsole counts from it

	cfg   Config
	p     paths
	argv  []string
	cmd   *exec.Cmd
	ports map[int]int // guest → host

	done    chan struct{} // closed when QEMU has exited
	waitErr error         // valid after done

	mu   sync.Mutex
	mark int64 // WaitConsole searches the serial log from here
}

// Start creates (or reuses) the VM's overlay in cfg.WorkDir and starts QEMU.
// It returns once QMP answers, so a bad argv fails here with QEMU's message.
// ctx bounds the start only: the VM runs until Stop or Kill.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	for _, f := range []*string{&cfg.Image, &cfg.Kernel, &cfg.Initrd, &cfg.WorkDir} {
		if *f, err = filepath.Abs(*f); err != nil {
			return nil, fmt.Errorf("qemu: VM %s: %w", cfg.Name, err)
		}
	}
	for _, f := range []string{cfg.Image, cfg.Kernel, cfg.Initrd} {
		if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("qemu: VM %s: %s is not a readable regular file (%v)", cfg.Name, f, err)
		}
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("qemu: VM %s: %w", cfg.Name, err)
	}
	v := &VM{cfg: cfg, done: make(chan struct{}), p: paths{
		overlay: filepath.Join(cfg.WorkDir, "disk.qcow2"),
		qmp:     filepath.Join(cfg.WorkDir, "qmp.sock"),
		serial:  cfg.SerialLog,
	}}
	if v.p.serial == "" {
		v.p.serial = filepath.Join(cfg.WorkDir, "console.log")
	}
	if err := checkSocketPath(v.p.qmp); err != nil {
		return nil, fmt.Errorf("qemu: VM %s: %w", cfg.Name, err)
	}
	if err := createOverlay(ctx, cfg.Image, v.p.overlay); err != nil {
		return nil, fmt.Errorf("qemu: VM %s: %w", cfg.Name, err)
	}
	os.Remove(v.p.qmp) // left by an earlier, killed run
	if cfg.LAN != nil {
		if v.p.lanLocal, err = cfg.LAN.attach(cfg.Name); err != nil {
			return nil, fmt.Errorf("qemu: VM %s: %w", cfg.Name, err)
		}
		v.p.lanHub = cfg.LAN.hubPath()
	}
	v.argv = cfg.args(v.p)

	if err := v.start(); err != nil {
		v.detach()
		return nil, err
	}
	if err := v.awaitQMP(ctx); err != nil {
		v.Kill()
		return nil, err
	}
	if len(cfg.Forward) > 0 {
		if err := v.readPorts(ctx); err != nil {
			v.Kill()
			return nil, err
		}
	}
	slog.Debug("qemu started", "vm", cfg.Name, "pid", v.PID(), "ports", v.ports)
	return v, nil
}

func createOverlay(ctx context.Context, image, overlay string) error {
	if _, err := os.Stat(overlay); err == nil {
		return nil
	}
	tmp := overlay + ".tmp"
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-b", image, "-F", "raw", tmp).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("qemu-img create overlay over %s: %w: %s", image, err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, overlay); err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	return nil
}

func (v *VM) start() error {
	logf, err := os.Create(filepath.Join(v.cfg.WorkDir, "qemu.log"))
	if err != nil {
		return fmt.Errorf("qemu: VM %s: %w", v.cfg.Name, err)
	}
	defer logf.Close() // the child has its own descriptor
	v.cmd = exec.Command("qemu-system-aarch64", v.argv...)
	v.cmd.Stdout, v.cmd.Stderr = logf, logf
	// If the test binary dies without cleaning up, the VM dies with it.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	v.StartedAt = time.Now()
	if err := v.cmd.Start(); err != nil {
		return fmt.Errorf("qemu: VM %s: start qemu-system-aarch64: %w", v.cfg.Name, err)
	}
	go func() {
		v.waitErr = v.cmd.Wait()
		v.detach()
		close(v.done)
	}()
	return nil
}

func (v *VM) detach() {
	if v.cfg.LAN != nil {
		v.cfg.LAN.detach(v.cfg.Name)
	}
}

// awaitQMP waits until QEMU answers on QMP or exits (a bad argv).
func (v *VM) awaitQMP(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, qmpReadyTimeout)
	defer cancel()
	for {
		if _, err := os.Stat(v.p.qmp); err == nil {
			if _, err := qmp(ctx, v.p.qmp, "query-status", nil); err == nil {
				return nil
			}
		}
		select {
		case <-v.done:
			return v.exitError()
		case <-ctx.Done():
			return fmt.Errorf("qemu: VM %s: QMP did not answer: %w; %s", v.cfg.Name, ctx.Err(), v.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (v *VM) readPorts(ctx context.Context) error {
	raw, err := qmp(ctx, v.p.qmp, "human-monitor-command", map[string]string{"command-line": "info usernet"})
	if err != nil {
		return fmt.Errorf("qemu: VM %s: %w", v.cfg.Name, err)
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		return fmt.Errorf("qemu: VM %s: info usernet: %w", v.cfg.Name, err)
	}
	v.ports = parseUsernet(out)
	for g := range v.cfg.Forward {
		if v.ports[g] == 0 {
			return fmt.Errorf("qemu: VM %s: guest port %d has no host forward in %q", v.cfg.Name, g, out)
		}
	}
	return nil
}

func (v *VM) exitError() error {
	return fmt.Errorf("qemu: VM %s: %w (%v); %s", v.cfg.Name, errExited, v.waitErr, v.logTail())
}

// logTail is the end of QEMU's own stdout and stderr, for error messages.
func (v *VM) logTail() string {
	b, _ := os.ReadFile(filepath.Join(v.cfg.WorkDir, "qemu.log"))
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	if s == "" {
		return "qemu.log is empty"
	}
	return "qemu.log: " + s
}

// PID is QEMU's process id.
func (v *VM) PID() int { return v.cmd.Process.Pid }

// Args is QEMU's argv without the binary, for logs.
func (v *VM) Args() []string { return append([]string(nil), v.argv...) }

// SerialLog is the file the console is streamed to.
func (v *VM) SerialLog() string { return v.p.serial }

// HostPort is the 127.0.0.1 port forwarded to the guest's TCP port guest, 0
// if none is.
func (v *VM) HostPort(guest int) int { return v.ports[guest] }

// Exited is closed when QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.done }

// Reset is a power cut and power on: QMP system_reset. The disk keeps what
// QEMU has written; the guest's unwritten page cache is lost. WaitConsole
// afterwards only looks at console output from after the reset.
func (v *VM) Reset(ctx context.Context) error {
	st, _ := os.Stat(v.p.serial)
	if _, err := qmp(ctx, v.p.qmp, "system_reset", nil); err != nil {
		return fmt.Errorf("qemu: VM %s: reset: %w", v.cfg.Name, err)
	}
	if st != nil {
		v.mu.Lock()
		v.mark = max(v.mark, st.Size())
		v.mu.Unlock()
	}
	return nil
}

// Kill sends SIGKILL to QEMU's PID and waits for it to exit. Killing a VM
// that already exited is not an error.
func (v *VM) Kill() error {
	select {
	case <-v.done:
		return nil
	default:
	}
	if err := v.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("qemu: VM %s: kill pid %d: %w", v.cfg.Name, v.PID(), err)
	}
	<-v.done
	return nil
}

// Stop asks QEMU to quit over QMP, and kills it if it has not exited within
// a bound. The guest is not shut down: this is pulling the plug.
func (v *VM) Stop(ctx context.Context) error {
	select {
	case <-v.done:
		return nil
	default:
	}
	qctx, cancel := context.WithTimeout(ctx, quitTimeout)
	defer cancel()
	if _, err := qmp(qctx, v.p.qmp, "quit", nil); err != nil {
		slog.Debug("qemu quit over QMP failed; killing", "vm", v.cfg.Name, "err", err)
		return v.Kill()
	}
	select {
	case <-v.done:
		return nil
	case <-qctx.Done():
		return v.Kill()
	}
}
