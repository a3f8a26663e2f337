package vmcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/homecloud/homecloud/firstboot/status"
)

// Figures are what a boot took, each from a QEMU start.
type Figures struct {
	Kernel, MultiUser, Serve map[string]time.Duration // per VM
	ClusterServe             time.Duration            // first QEMU start → every node serving
	VIPFailover              time.Duration            // holder killed → another holds the VIP
}

// Print writes the figures as name=value lines (seconds), VMs in order.
func (f Figures) Print(w io.Writer, c *Cluster) {
	for i, v := range c.VMs {
		for _, m := range []struct {
			name string
			d    map[string]time.Duration
		}{{"kernel", f.Kernel}, {"multiuser", f.MultiUser}, {"serve", f.Serve}} {
			if d, ok := m.d[v.Name]; ok {
				fmt.Fprintf(w, "vm%d_%s_s=%.1f\n", i+1, m.name, d.Seconds())
			}
		}
	}
	if f.ClusterServe > 0 {
		fmt.Fprintf(w, "cluster_serve_s=%.1f\n", f.ClusterServe.Seconds())
	}
	if f.VIPFailover > 0 {
		fmt.Fprintf(w, "vip_failover_s=%.1f\n", f.VIPFailover.Seconds())
	}
}

var kernelRE = regexp.MustCompile(`Booting Linux on physical CPU`)

// WaitBooted waits for every VM's kernel on its serial console (watched
// since the VM started or was reset: see Cluster.Reset), then asks
// systemd over SSH when multi-user.target was reached. (The console is no
// witness for that: systemd stops printing unit status there once a getty
// owns it.) systemd's monotonic clock starts with the kernel, so the time
// is the kernel's plus systemd's.
func (c *Cluster) WaitBooted(ctx context.Context, a Access, f *Figures) error {
	if f.Kernel == nil {
		f.Kernel, f.MultiUser = map[string]time.Duration{}, map[string]time.Duration{}
	}
	var mu sync.Mutex
	return c.each(func(v *VM) error {
		k, err := c.Kernel(ctx, v)
		if err != nil {
			return err
		}
		mu.Lock()
		f.Kernel[v.Name] = k
		mu.Unlock()
		mono, err := pollMonotonic(ctx, v, a, "systemctl show -p ActiveEnterTimestampMonotonic --value multi-user.target")
		if err != nil {
			return fmt.Errorf("%s never reached multi-user.target: %w; console ends:\n%s", v.Name, err, consoleTail(v))
		}
		mu.Lock()
		f.MultiUser[v.Name] = k + mono
		mu.Unlock()
		fmt.Fprintf(c.log, "%s: kernel after %s, multi-user after %s\n", v.Name, k.Round(time.Second/10), (k + mono).Round(time.Second/10))
		return nil
	})
}

// pollMonotonic runs cmd over SSH until it prints a non-zero count of
// microseconds of the boot's monotonic clock.
func pollMonotonic(ctx context.Context, v *VM, a Access, cmd string) (time.Duration, error) {
	var last error
	for {
		sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		out, err := v.Run(sctx, a, cmd)
		cancel()
		if err == nil {
			us, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if perr == nil && us > 0 {
				return time.Duration(us) * time.Microsecond, nil
			}
			last = fmt.Errorf("%s printed %q", cmd, bytes.TrimSpace(out))
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w; last: %v", ctx.Err(), last)
		case <-time.After(2 * time.Second):
		}
	}
}

// serveCmd prints the monotonic time of the node service's serve step
// from the journal (the admin may read it).
const serveCmd = `journalctl -b -u homecloud-firstboot -o json --output-fields=MESSAGE | ` +
	`grep -m1 'step=serve' | sed -n 's/.*"__MONOTONIC_TIMESTAMP":"\([0-9]*\)".*/\1/p'`

// Serving reports whether a node finished its steps.
func Serving(v *status.View) bool { return v != nil && slices.Contains(v.Done, "serve") }

// WaitServing polls every live VM's status until each has done its serve
// step, records when the step began (the kernel's time plus the journal's
// monotonic stamp; WaitBooted must have run), and returns the views.
func (c *Cluster) WaitServing(ctx context.Context, a Access, f *Figures) (map[string]*status.View, error) {
	if f.Serve == nil {
		f.Serve = map[string]time.Duration{}
	}
	var mu sync.Mutex
	views := map[string]*status.View{}
	err := c.each(func(v *VM) error {
		var last error
		for {
			sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
			view, err := v.Status(sctx, a)
			cancel()
			if err == nil && Serving(view) {
				// When the step began, by the journal, not when a poll saw it.
				mono, merr := pollMonotonic(ctx, v, a, serveCmd)
				if merr != nil {
					return fmt.Errorf("%s serves, but its journal has no serve step: %w", v.Name, merr)
				}
				mu.Lock()
				d := f.Kernel[v.Name] + mono
				mu.Unlock()
				mu.Lock()
				views[v.Name] = view
				if _, ok := f.Serve[v.Name]; !ok {
					f.Serve[v.Name] = d
				}
				mu.Unlock()
				fmt.Fprintf(c.log, "%s: serving after %s\n", v.Name, d.Round(time.Second/10))
				return nil
			}
			if err != nil {
				last = err
			} else {
				last = fmt.Errorf("at step %s (done %v) %s", view.Step, view.Done, view.Error)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s never served: %w; last: %v; console ends:\n%s", v.Name, ctx.Err(), last, consoleTail(v))
			case <-time.After(2 * time.Second):
			}
		}
	})
	if err == nil && len(c.VMs) > 0 {
		var latest time.Duration
		for _, v := range c.VMs {
			latest = max(latest, v.StartedAt.Sub(c.Started)+f.Serve[v.Name])
		}
		f.ClusterServe = latest
	}
	return views, err
}

// Converged checks the views as a user would: every node sees the same
// raft leader, the same members (all of them) and the same plan, and
// exactly one of them holds the VIP. It returns the holder.
func Converged(views map[string]*status.View, nodes int) (string, error) {
	var errs []error
	var leader, members string
	var plan []byte
	var holders []string
	names := make([]string, 0, len(views))
	for n := range views {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		v := views[n]
		var ms []string
		for _, m := range v.Members {
			ms = append(ms, m.ID)
		}
		sort.Strings(ms)
		if i == 0 {
			leader, members, plan = v.Leader, strings.Join(ms, ","), v.Plan
		}
		switch {
		case v.Leader == "":
			errs = append(errs, fmt.Errorf("%s knows no raft leader", n))
		case v.Leader != leader:
			errs = append(errs, fmt.Errorf("%s follows %s, %s follows %s", n, v.Leader, names[0], leader))
		}
		if len(ms) != nodes {
			errs = append(errs, fmt.Errorf("%s sees %d raft members %v, want %d", n, len(ms), ms, nodes))
		} else if strings.Join(ms, ",") != members {
			errs = append(errs, fmt.Errorf("%s sees members %v, %s sees %s", n, ms, names[0], members))
		}
		if len(v.Plan) == 0 || !bytes.Equal(v.Plan, plan) {
			errs = append(errs, fmt.Errorf("%s has plan %s, %s has %s", n, v.Plan, names[0], plan))
		}
		if v.HoldsVIP {
			holders = append(holders, n)
		}
	}
	if len(holders) != 1 {
		errs = append(errs, fmt.Errorf("VIP held by %v, want exactly one node", holders))
	}
	if len(views) != nodes {
		errs = append(errs, fmt.Errorf("%d views, want %d", len(views), nodes))
	}
	if len(holders) == 1 {
		return holders[0], errors.Join(errs...)
	}
	return "", errors.Join(errs...)
}

// WaitConverged asks every live VM for a fresh view until Converged holds
// for one snapshot, and returns it with the VIP holder. Views taken as
// each node reached serve are minutes apart on TCG, and a leader elected
// meanwhile or a VIP still being claimed is not a disagreement.
func (c *Cluster) WaitConverged(ctx context.Context, a Access, nodes int) (map[string]*status.View, string, error) {
	var last error
	for {
		var mu sync.Mutex
		views := map[string]*status.View{}
		err := c.each(func(v *VM) error {
			sctx, cancel := context.WithTimeout(ctx, 45*time.Second)
			defer cancel()
			view, err := v.Status(sctx, a)
			if err != nil {
				return err
			}
			mu.Lock()
			views[v.Name] = view
			mu.Unlock()
			return nil
		})
		if err == nil {
			holder, cerr := Converged(views, nodes)
			if cerr == nil {
				return views, holder, nil
			}
			err = cerr
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, "", fmt.Errorf("the nodes serve but do not agree: %w; last: %v", ctx.Err(), last)
		case <-time.After(3 * time.Second):
		}
	}
}

// Failover kills the VIP holder's VM (SIGKILL to QEMU: a board losing
// power) and waits until another VM holds the VIP. It returns the new
// holder and records the time.
func (c *Cluster) Failover(ctx context.Context, a Access, holder string, f *Figures) (string, error) {
	v := c.VM(holder)
	if v == nil {
		return "", fmt.Errorf("no VM %s", holder)
	}
	start := time.Now()
	if err := v.Kill(); err != nil {
		return "", err
	}
	fmt.Fprintf(c.log, "%s: killed, holding the VIP\n", holder)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	found := make(chan string, len(c.VMs))
	for _, o := range c.Alive() {
		go func() {
			for ctx.Err() == nil {
				sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
				view, err := o.Status(sctx, a)
				scancel()
				if err == nil && view.HoldsVIP {
					found <- o.Name
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		}()
	}
	select {
	case n := <-found:
		f.VIPFailover = time.Since(start)
		fmt.Fprintf(c.log, "%s: holds the VIP %s after %s died\n", n, f.VIPFailover.Round(time.Second/10), holder)
		return n, nil
	case <-ctx.Done():
		return "", fmt.Errorf("no VM took the VIP over from %s: %w", holder, ctx.Err())
	}
}

// each runs fn for every live VM at once and joins the errors.
func (c *Cluster) each(fn func(v *VM) error) error {
	vms := c.Alive()
	errs := make([]error, len(vms))
	var wg sync.WaitGroup
	for i, v := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(v)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
