// Package clustertest runs real homecloud-firstboot processes as a cluster
// on one machine: one network namespace per node on a shared bridge, real
// mDNS, raft over TLS and keepalived, and fake-k3s standing in for k3s (the
// one binary that cannot be had here). Each node's files come from the
// builder's own secrets code, laid out under a per-node root directory
// exactly as in an image.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/homecloud/homecloud/builder/secrets"
	"github.com/homecloud/homecloud/firstboot/k3s"
	"github.com/homecloud/homecloud/firstboot/keepalived"
	"github.com/homecloud/homecloud/firstboot/status"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/internal/netns"
)

// Bins are the programs a cluster runs, built for this machine.
type Bins struct {
	Firstboot string
	FakeK3s   string
}

// Build compiles homecloud-firstboot and fake-k3s into dir.
func Build(ctx context.Context, moduleRoot, dir string) (Bins, error) {
	b := Bins{Firstboot: filepath.Join(dir, "homecloud-firstboot"), FakeK3s: filepath.Join(dir, "fake-k3s")}
	for pkg, out := range map[string]string{"./cmd/homecloud-firstboot": b.Firstboot, "./cmd/fake-k3s": b.FakeK3s} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = moduleRoot
		if o, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %w: %s", pkg, err, o)
		}
	}
	return b, nil
}

// Options shape a test cluster.
type Options struct {
	Nodes  int
	Dir    string // scratch space, removed by the caller
	Bins   Bins
	Subnet netip.Prefix // e.g. 10.77.0.0/24, used only inside the lab
	Name   string       // cluster name, default "home"
	NoVIP  bool
}

// Cluster is a running test cluster.
type Cluster struct {
	Opts  Options
	Lab   *netns.Lab
	VIP   netip.Addr
	Nodes []*Node
	sec   *secrets.Secrets
}

// Node is one node: a namespace, a root directory and maybe a process.
type Node struct {
	Name  string
	Index int
	Host  *netns.Host
	Root  string
	Log   string
	c     *Cluster
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	Boots int
	Env   []string // extra environment for the next start
	Flags []string // extra flags of `homecloud-firstboot run` for the next start
	exit  error
}

// ExitErr is how the last process ended (nil while running or on exit 0).
func (n *Node) ExitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exit
}

// New lays out n nodes (not started). Close removes everything.
func New(ctx context.Context, o Options) (*Cluster, error) {
	if o.Name == "" {
		o.Name = "home"
	}
	lab, err := netns.New(ctx, o.Subnet)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Opts: o, Lab: lab}
	if !o.NoVIP {
		c.VIP = lastAddr(o.Subnet)
	}
	var specs []secrets.NodeSpec
	for i := 1; i <= o.Nodes; i++ {
		name := fmt.Sprintf("%s-node%d", o.Name, i)
		h, err := lab.AddHost(ctx, name)
		if err != nil {
			c.Close()
			return nil, err
		}
		specs = append(specs, secrets.NodeSpec{Name: name, Index: i, Addr: h.Addr})
		c.Nodes = append(c.Nodes, &Node{Name: name, Index: i, Host: h, c: c,
			Root: filepath.Join(o.Dir, name), Log: filepath.Join(o.Dir, name+".log")})
	}
	if c.sec, err = secrets.LoadOrCreate(filepath.Join(o.Dir, "out"), o.Name, specs, time.Now()); err != nil {
		c.Close()
		return nil, err
	}
	for _, n := range c.Nodes {
		if err := c.layout(n); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 2 // broadcast - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) + host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// baseAccounts is what a base image brings in /etc: root with the
// password "1234" (the SHA-512 crypt hash Armbian ships), and login.defs
// with Debian's defaults.
var baseAccounts = map[string]string{
	"etc/passwd":     "root:x:0:0:root:/root:/bin/bash\n",
	"etc/group":      "root:x:0:\n",
	"etc/shadow":     "root:$6$rounds=5000$armbian$Q5dDuVq8y0vlp1d3d0Gk0mQ2XWQm0oQ1m3bqkF0Wm0hN5v1zK6o4l2m3n4o5p6q7r8s9t0u1v2w3x4y5z6A7B8:19000:0:99999:7:::\n",
	"etc/login.defs": "UMASK\t\t022\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\n",
}

// layout writes the node's files as the builder puts them in an image.
func (c *Cluster) layout(n *Node) error {
	b, err := c.sec.Bundle(n.Name)
	if err != nil {
		return err
	}
	for _, f := range b.Files {
		p := filepath.Join(n.Root, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			return err
		}
	}
	// The accounts of a base image whose root password is Armbian's
	// well-known one, for the node's first-boot hardening to lock.
	for path, body := range baseAccounts {
		if err := os.MkdirAll(filepath.Join(n.Root, "etc"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(n.Root, path), []byte(body), 0o640); err != nil {
			return err
		}
	}
	cfg := cluster.Node{
		Cluster: c.Opts.Name, ClusterID: c.sec.ClusterID(), Name: n.Name, Index: n.Index,
		Expect: c.Opts.Nodes, Board: "qemu-virt",
		Network: cluster.Network{Mode: "static", Address: netip.PrefixFrom(n.Host.Addr, c.Opts.Subnet.Bits()).String(),
			Gateway: c.Lab.Gateway.String(), MAC: b.MAC.String(), Interface: "eth0"},
	}
	if c.VIP.IsValid() {
		cfg.VIP = c.VIP.String()
	}
	for _, m := range c.Nodes {
		cfg.Members = append(cfg.Members, cluster.Member{Name: m.Name, Index: m.Index, Address: m.Host.Addr.String()})
	}
	data, err := cfg.Marshal()
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.Root, cluster.NodeConfigPath), data, 0o600)
}

// Start runs the node service in the node's namespace.
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("%s already running", n.Name)
	}
	// /run is a tmpfs on a real board: a boot starts with it empty, so a
	// pid file left by a killed keepalived must not survive either.
	run := filepath.Join(n.Root, "run")
	if err := os.RemoveAll(run); err != nil {
		return err
	}
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	kconf := filepath.Join(n.Root, keepalived.ConfigPath)
	// No --check: keepalived runs the product's default, check-k3s on the
	// node-ip of the k3s config.
	args := []string{"netns", "exec", n.Host.NS, n.c.Opts.Bins.Firstboot, "run",
		"--root", n.Root, "--iface", "eth0", "--supervisor", "exec",
		"--exec-unit", k3s.ServerUnit + "=" + n.c.Opts.Bins.FakeK3s + " server --config " + filepath.Join(n.Root, k3s.ConfigPath),
		"--exec-unit", k3s.AgentUnit + "=" + n.c.Opts.Bins.FakeK3s + " agent --config " + filepath.Join(n.Root, k3s.ConfigPath),
		"--exec-unit", keepalived.Unit + "=" + strings.Join(keepalived.Argv(kconf, run), " "),
	}
	args = append(args, n.Flags...)
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	n.Boots++
	fmt.Fprintf(logf, "=== boot %d at %s\n", n.Boots, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), n.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	done := n.done
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.exit = err
		n.mu.Unlock()
		close(done)
	}()
	return nil
}

// PID is the node service's process id (ip netns exec execs it in place),
// or 0 when it is not running.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// PeakRSSKiB is the node service's peak resident set (VmHWM).
func (n *Node) PeakRSSKiB() (int, error) {
	pid := n.PID()
	if pid == 0 {
		return 0, fmt.Errorf("%s is not running", n.Name)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// Running reports whether the node's process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// Exited waits for the process to end by itself (bounded by ctx).
func (n *Node) Exited(ctx context.Context) error {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		n.mu.Lock()
		n.cmd = nil
		n.mu.Unlock()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Kill is a power cut: SIGKILL to the node service's process group (its
// k3s and keepalived die with it), and the VIP goes with the board: a
// SIGKILLed keepalived would leave it configured on a dead node.
func (n *Node) Kill() {
	n.signal(syscall.SIGKILL)
	if n.c.VIP.IsValid() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Host.Run(ctx, "ip", "addr", "del", netip.PrefixFrom(n.c.VIP, n.c.Opts.Subnet.Bits()).String(), "dev", "eth0")
	}
}

// Stop is an orderly shutdown (SIGTERM), then SIGKILL after a bound.
func (n *Node) Stop() {
	n.signal(syscall.SIGTERM)
}

func (n *Node) signal(sig syscall.Signal) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	// The process group: ip netns exec execs the service in place, and
	// the service's children share its group unless they made their own.
	syscall.Kill(-cmd.Process.Pid, sig)
	syscall.Kill(cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	n.mu.Lock()
	n.cmd = nil
	n.mu.Unlock()
}

// Status asks the node's status endpoint, from inside its namespace.
func (n *Node) Status(ctx context.Context) (*status.View, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addr := n.Host.Addr.String() + ":" + strconv.Itoa(cluster.DefaultStatusPort)
	out, err := n.Host.Command(ctx, n.c.Opts.Bins.Firstboot, "status", "--addr", addr).Output()
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", n.Name, err)
	}
	return status.Decode(out)
}

// HoldsVIP reports whether the VIP is on the node's eth0 right now.
func (n *Node) HoldsVIP(ctx context.Context) bool {
	ok, _ := n.Host.HasAddr(ctx, n.c.VIP)
	return ok
}

// Close stops every node by PID and removes the lab.
func (c *Cluster) Close() error {
	for _, n := range c.Nodes {
		n.signal(syscall.SIGKILL)
	}
	return c.Lab.Close()
}

// WaitFor polls until cond holds or ctx ends; the error carries the last
// reason cond gave.
func WaitFor(ctx context.Context, every time.Duration, cond func() (bool, string)) error {
	var why string
	for {
		ok, w := cond()
		if ok {
			return nil
		}
		why = w
		select {
		case <-ctx.Done():
			return errors.New(why)
		case <-time.After(every):
		}
	}
}
