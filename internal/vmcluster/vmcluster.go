// Package vmcluster boots the node images of one builder run as a cluster
// of arm64 VMs (QEMU's virt machine under TCG) on one private virtual LAN
// that reaches nothing else, and measures what a user would watch: each
// VM's way to the kernel, to multi-user.target and to the node service's
// serve step, and the VIP moving when its holder dies. scripts/boot-cluster
// and the boot test both run it.
package vmcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/homecloud/homecloud/internal/qemu"
)

// Options describe the VMs to boot.
type Options struct {
	Images []string // raw node images, one VM each
	Work   string   // overlays, consoles and sockets; keep the path short
	MemMiB int      // per VM; qemu.DefaultMemMiB if zero
	CPUs   int      // per VM; qemu.DefaultCPUs if zero
	// Forward lists guest TCP ports reachable on 127.0.0.1 (see
	// VM.HostPort); SSH (22) is always among them.
	Forward []int
	// DHCP, when valid, is the LAN's router address/prefix: the LAN hands
	// out leases from its host .100 on. Static images need none.
	DHCP   netip.Prefix
	Append string    // kernel command line; qemu.DefaultAppend if empty
	Log    io.Writer // progress lines; may be nil
}

// VM is one node's virtual board.
type VM struct {
	*qemu.VM
	Name  string
	Image string
}

// Cluster is the booted VMs and their LAN.
type Cluster struct {
	LAN     *qemu.LAN
	VMs     []*VM
	Started time.Time // when the first QEMU was started
	log     io.Writer

	watchCtx context.Context
	stop     context.CancelFunc // ends the console watchers
	mu       sync.Mutex
	kernels  map[string]*kernelWatch
}

// kernelWatch is when a VM's kernel last came up, watched on its console
// from the moment the VM starts (or is reset), so the time is when the
// line appeared, not when someone asked.
type kernelWatch struct {
	done chan struct{}
	at   time.Duration // since QEMU started; valid after done
	err  error
}

func (c *Cluster) watchKernel(ctx context.Context, v *VM) {
	w := &kernelWatch{done: make(chan struct{})}
	c.mu.Lock()
	c.kernels[v.Name] = w
	c.mu.Unlock()
	go func() {
		w.at, w.err = v.WaitConsole(ctx, kernelRE)
		close(w.done)
	}()
}

// Kernel waits until the VM's kernel is up and returns when it came.
func (c *Cluster) Kernel(ctx context.Context, v *VM) (time.Duration, error) {
	c.mu.Lock()
	w := c.kernels[v.Name]
	c.mu.Unlock()
	if w == nil {
		return 0, fmt.Errorf("%s: not booted by this cluster", v.Name)
	}
	select {
	case <-w.done:
		return w.at, w.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%s: no kernel on the console: %w", v.Name, ctx.Err())
	}
}

// Reset power-cycles one VM (QMP system_reset) and watches for its next
// kernel.
func (c *Cluster) Reset(ctx context.Context, v *VM) error {
	if err := v.Reset(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	wctx := c.watchCtx
	c.mu.Unlock()
	c.watchKernel(wctx, v)
	return nil
}

// Images lists dir/*.img in name order: the images a builder run wrote.
func Images(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "*.img"))
	if err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("no *.img in %s: run homecloud-builder --board qemu-virt --out %s first", dir, dir)
	}
	sort.Strings(m)
	return m, nil
}

// Name makes a QEMU-safe VM name from an image file name.
func Name(img string) string {
	base := strings.ToLower(strings.TrimSuffix(filepath.Base(img), ".img"))
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, base)
}

// Boot starts one VM per image, all at once, each from a qcow2 overlay so
// the images stay as the builder wrote them. On error every VM already
// started is stopped. Close stops them all.
func Boot(ctx context.Context, o Options) (_ *Cluster, err error) {
	if err := qemu.Available(); err != nil {
		return nil, err
	}
	if len(o.Images) == 0 {
		return nil, errors.New("boot: no images")
	}
	lan, err := qemu.NewLAN(filepath.Join(o.Work, "lan"))
	if err != nil {
		return nil, err
	}
	c := &Cluster{LAN: lan, log: o.Log, kernels: map[string]*kernelWatch{}}
	c.watchCtx, c.stop = context.WithCancel(context.Background())
	if c.log == nil {
		c.log = io.Discard
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if o.DHCP.IsValid() {
		b := o.DHCP.Masked().Addr().As4()
		b[3] = 100
		if err := lan.ServeDHCP(o.DHCP, netip.AddrFrom4(b)); err != nil {
			return nil, err
		}
	}
	forward := map[int]int{22: 0}
	for _, p := range o.Forward {
		forward[p] = 0
	}
	// The kernels first: extracting them is slow and must not count
	// against the first VM's boot.
	type boot struct{ kernel, initrd string }
	boots := make([]boot, len(o.Images))
	for i, img := range o.Images {
		k, initrd, err := qemu.ExtractBoot(ctx, img, filepath.Join(o.Work, Name(img), "boot"))
		if err != nil {
			return nil, err
		}
		boots[i] = boot{k, initrd}
	}
	for i, img := range o.Images {
		name := Name(img)
		v, err := qemu.Start(ctx, qemu.Config{
			Name: name, Image: img, Kernel: boots[i].kernel, Initrd: boots[i].initrd, Append: o.Append,
			MemMiB: o.MemMiB, CPUs: o.CPUs, LAN: lan, Forward: forward, WorkDir: filepath.Join(o.Work, name),
		})
		if err != nil {
			return nil, err
		}
		if c.Started.IsZero() {
			c.Started = v.StartedAt
		}
		vm := &VM{VM: v, Name: name, Image: img}
		c.VMs = append(c.VMs, vm)
		c.watchKernel(c.watchCtx, vm)
		fmt.Fprintf(c.log, "%s: pid %d, console %s, ssh at 127.0.0.1:%d\n", name, v.PID(), v.SerialLog(), v.HostPort(22))
	}
	return c, nil
}

// Close stops every VM (by its PID, through QEMU) and the LAN.
func (c *Cluster) Close() {
	c.stop()
	for _, v := range c.VMs {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		v.Stop(ctx)
		cancel()
	}
	c.LAN.Close()
}

// VM returns the VM of the named node.
func (c *Cluster) VM(name string) *VM {
	for _, v := range c.VMs {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// Alive are the VMs whose QEMU still runs.
func (c *Cluster) Alive() []*VM {
	var out []*VM
	for _, v := range c.VMs {
		select {
		case <-v.Exited():
		default:
			out = append(out, v)
		}
	}
	return out
}

// consoleTail is the end of a VM's console, for error messages.
func consoleTail(v *VM) string {
	b, _ := os.ReadFile(v.SerialLog())
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}
