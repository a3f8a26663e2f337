// Command boot-cluster boots every node image a builder run wrote (the
// qemu-virt board) as arm64 VMs on one private virtual LAN and prints how
// long each took to the kernel and to multi-user.target. Given the admin's
// SSH key it also waits for every node service to serve, checks that they
// agree, kills the VIP holder and times the failover. With -check it exits
// when done (status 0, or 1 on a failure); without, the VMs run until
// interrupted. scripts/boot-cluster runs it; the figures are name=value
// lines on stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/homecloud/homecloud/internal/qemu"
	"github.com/homecloud/homecloud/internal/vmcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	images, work  string
	mem, cpus     int
	forward       []int
	timeout       time.Duration
	check         bool
	sshKey, user  string
	failover      bool
	appendCmdline string
	dhcp          netip.Prefix // zero: no DHCP on the LAN
	pool          netip.Addr
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("boot-cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.images, "images", "./out", "`dir` with the builder's node images (*.img) and its cluster/ dir")
	fs.StringVar(&o.work, "work", "", "`dir` for overlays, consoles and sockets (default: a new one under /tmp; keep it short)")
	fs.IntVar(&o.mem, "mem", qemu.DefaultMemMiB, "memory per VM in `MiB`")
	fs.IntVar(&o.cpus, "cpus", qemu.DefaultCPUs, "virtual CPUs per VM")
	ports := fs.String("forward", "22", "comma-separated guest TCP `ports` to forward to free ports on 127.0.0.1 (22 always is)")
	fs.DurationVar(&o.timeout, "timeout", 40*time.Minute, "how long the whole boot may take")
	fs.BoolVar(&o.check, "check", false, "exit when done instead of keeping the VMs running")
	fs.StringVar(&o.sshKey, "ssh-key", "", "the admin's private key `file` (the pair of the builder's --ssh-key); without it the VMs are only booted, not checked")
	fs.StringVar(&o.user, "user", "homecloud", "the admin account (the builder's --admin-user)")
	fs.BoolVar(&o.failover, "failover", true, "kill the VIP holder and time the failover")
	fs.StringVar(&o.appendCmdline, "append", qemu.DefaultAppend, "kernel `command line`")
	dhcp := fs.String("dhcp", "off", "the LAN's DHCP server as router `address/prefix` (leases from host .100), for images built with --network dhcp; off for static images")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: images are taken from -images DIR", fs.Args())
	}
	for _, p := range strings.Split(*ports, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("-forward: %q is not a TCP port", p)
		}
		o.forward = append(o.forward, n)
	}
	if o.check && o.sshKey == "" {
		return nil, errors.New("-check needs -ssh-key, the private half of the builder's --ssh-key: the VMs are checked over SSH")
	}
	if *dhcp != "off" {
		p, err := netip.ParsePrefix(*dhcp)
		if err != nil || !p.Addr().Is4() || p.Bits() > 24 {
			return nil, fmt.Errorf("-dhcp %q: want an IPv4 address/prefix of /24 or wider, like 10.77.0.1/24, or off", *dhcp)
		}
		o.dhcp = p
		b := p.Masked().Addr().As4()
		b[3] = 100
		o.pool = netip.AddrFrom4(b)
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "boot-cluster:", err)
		return 2
	}
	if err := boot(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "boot-cluster:", err)
		return 1
	}
	return 0
}

func boot(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	images, err := vmcluster.Images(o.images)
	if err != nil {
		return err
	}
	var access vmcluster.Access
	if o.sshKey != "" {
		if access, err = vmcluster.LoadAccess(o.user, o.sshKey, o.images); err != nil {
			return err
		}
	}
	madeWork := o.work == ""
	if madeWork {
		if o.work, err = os.MkdirTemp("", "boot-cluster"); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	c, err := vmcluster.Boot(ctx, vmcluster.Options{
		Images: images, Work: o.work, MemMiB: o.mem, CPUs: o.cpus, Forward: o.forward,
		DHCP: o.dhcp, Append: o.appendCmdline, Log: stderr,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if o.sshKey == "" {
		// Boot only, for images without our admin (the unhardened base):
		// up once every kernel has printed; no login, no figures.
		for _, v := range c.VMs {
			if _, err := c.Kernel(ctx, v); err != nil {
				return fmt.Errorf("%w\nconsoles and QEMU logs are in %s", err, o.work)
			}
		}
		return up(ctx, o, c, stderr)
	}
	var f vmcluster.Figures
	defer f.Print(stdout, c)
	if err := c.WaitBooted(ctx, access, &f); err != nil {
		return fmt.Errorf("%w\nconsoles and QEMU logs are in %s", err, o.work)
	}
	if _, err := c.WaitServing(ctx, access, &f); err != nil {
		return fmt.Errorf("%w\nconsoles and QEMU logs are in %s", err, o.work)
	}
	views, holder, err := c.WaitConverged(ctx, access, len(c.VMs))
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "every node serves; leader %s; the VIP on %s\n", views[holder].Leader, holder)
	if o.failover && len(c.VMs) > 1 {
		if _, err := c.Failover(ctx, access, holder, &f); err != nil {
			return err
		}
	}
	if o.check {
		if madeWork {
			os.RemoveAll(o.work)
		}
		return nil
	}
	return up(ctx, o, c, stderr)
}

// up says where to reach each VM and keeps them running until ctx ends.
func up(ctx context.Context, o *options, c *vmcluster.Cluster, stderr io.Writer) error {
	for _, v := range c.Alive() {
		fmt.Fprintf(stderr, "%s: ssh -p %d %s@127.0.0.1\n", v.Name, v.HostPort(22), o.user)
		for _, p := range o.forward {
			if p != 22 {
				fmt.Fprintf(stderr, "%s: guest port %d at 127.0.0.1:%d\n", v.Name, p, v.HostPort(p))
			}
		}
	}
	fmt.Fprintf(stderr, "the VMs are up; work dir %s; Ctrl-C stops them\n", filepath.Clean(o.work))
	<-ctx.Done()
	return nil
}
