// Command boot-cluster boots every node image a builder run wrote (the
// qemu-virt board) as arm64 VMs on one private virtual LAN, prints how to
// reach them and how long each took to a login prompt, and keeps them
// running until interrupted (or, with -check, exits once all reached login).
// scripts/boot-cluster runs it.
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
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/homecloud/homecloud/internal/qemu"
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
	loginPattern  *regexp.Regexp
	appendCmdline string
	dhcp          netip.Prefix // zero: no DHCP on the LAN
	pool          netip.Addr
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("boot-cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.images, "images", "./out", "`dir` with the builder's node images (*.img)")
	fs.StringVar(&o.work, "work", "", "`dir` for overlays, consoles and sockets (default: a new one under /tmp; keep it short)")
	fs.IntVar(&o.mem, "mem", qemu.DefaultMemMiB, "memory per VM in `MiB`")
	fs.IntVar(&o.cpus, "cpus", qemu.DefaultCPUs, "virtual CPUs per VM")
	ports := fs.String("forward", "22", "comma-separated guest TCP `ports` to forward to free ports on 127.0.0.1")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "how long each VM may take to a login prompt")
	fs.BoolVar(&o.check, "check", false, "exit once every VM reached a login prompt (status 0), or failed to (1)")
	login := fs.String("login", `login: `, "`regexp` on the serial console that means a VM has booted")
	fs.StringVar(&o.appendCmdline, "append", qemu.DefaultAppend, "kernel `command line`")
	dhcp := fs.String("dhcp", "10.77.0.1/24", "the LAN's DHCP server as router `address/prefix` (leases from host .100), or off for static images")
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
	re, err := regexp.Compile(*login)
	if err != nil {
		return nil, fmt.Errorf("-login: %w", err)
	}
	o.loginPattern = re
	return o, nil
}

// nodeImages lists DIR/*.img, skipping the builder's hidden temporaries.
func nodeImages(dir string) ([]string, error) {
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

// vmName makes a QEMU-safe name from an image file name.
func vmName(img string) string {
	base := strings.ToLower(strings.TrimSuffix(filepath.Base(img), ".img"))
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, base)
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
	if err := boot(ctx, o, stdout); err != nil {
		fmt.Fprintln(stderr, "boot-cluster:", err)
		return 1
	}
	return 0
}

func boot(ctx context.Context, o *options, stdout io.Writer) error {
	if err := qemu.Available(); err != nil {
		return err
	}
	images, err := nodeImages(o.images)
	if err != nil {
		return err
	}
	madeWork := o.work == ""
	if madeWork {
		if o.work, err = os.MkdirTemp("", "boot-cluster"); err != nil {
			return err
		}
	}
	removeWork := false
	defer func() { // registered first, so it runs after the VMs are stopped
		if removeWork {
			os.RemoveAll(o.work)
		}
	}()
	lan, err := qemu.NewLAN(filepath.Join(o.work, "lan"))
	if err != nil {
		return err
	}
	defer lan.Close()
	if o.dhcp.IsValid() {
		if err := lan.ServeDHCP(o.dhcp, o.pool); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "LAN: DHCP from %s, leases from %s\n", o.dhcp, o.pool)
	}

	var vms []*qemu.VM
	defer func() {
		for _, v := range vms {
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			v.Stop(sctx)
			cancel()
		}
	}()
	forward := map[int]int{}
	for _, p := range o.forward {
		forward[p] = 0
	}
	for _, img := range images {
		name := vmName(img)
		dir := filepath.Join(o.work, name)
		kernel, initrd, err := qemu.ExtractBoot(ctx, img, filepath.Join(dir, "boot"))
		if err != nil {
			return err
		}
		v, err := qemu.Start(ctx, qemu.Config{
			Name: name, Image: img, Kernel: kernel, Initrd: initrd, Append: o.appendCmdline,
			MemMiB: o.mem, CPUs: o.cpus, LAN: lan, Forward: forward, WorkDir: dir,
		})
		if err != nil {
			return err
		}
		vms = append(vms, v)
		fmt.Fprintf(stdout, "%s: pid %d, console %s", name, v.PID(), v.SerialLog())
		for _, p := range o.forward {
			fmt.Fprintf(stdout, ", guest %d at 127.0.0.1:%d", p, v.HostPort(p))
		}
		fmt.Fprintln(stdout)
	}

	// Wait for all logins at once: the VMs boot in parallel.
	var wg sync.WaitGroup
	errs := make([]error, len(vms))
	for i, v := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, o.timeout)
			defer cancel()
			d, err := v.WaitConsole(wctx, o.loginPattern)
			name := vmName(images[i])
			if err != nil {
				errs[i] = err
				return
			}
			fmt.Fprintf(stdout, "boot_login_seconds_%s=%.1f\n", strings.ReplaceAll(name, "-", "_"), d.Seconds())
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w\nconsoles and QEMU logs are in %s", err, o.work)
	}
	// Leases are by the MAC the guest uses, which the image may set itself.
	for mac, addr := range lan.Leases() {
		fmt.Fprintf(stdout, "LAN: lease %s to %s\n", addr, mac)
	}
	if o.check {
		removeWork = madeWork
		return nil
	}
	fmt.Fprintf(stdout, "all %d VMs are up; work dir %s; Ctrl-C stops them\n", len(vms), o.work)
	<-ctx.Done()
	return nil
}
