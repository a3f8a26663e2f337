// Command homecloud-firstboot is the node service baked into every image:
// it turns a freshly flashed board into a member of its cluster.
//
//	homecloud-firstboot run [flags]      the service (systemd starts it)
//	homecloud-firstboot status [--addr]  print a node's view as JSON
//	homecloud-firstboot check-k3s        exit 0 iff the local k3s API is ready (keepalived's track script)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/homecloud/homecloud/firstboot/k3s"
	"github.com/homecloud/homecloud/firstboot/node"
	"github.com/homecloud/homecloud/firstboot/status"
	"github.com/homecloud/homecloud/firstboot/svc"
	"github.com/homecloud/homecloud/internal/cluster"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "run":
		err = run(ctx, os.Args[2:])
	case "status":
		err = showStatus(ctx, os.Args[2:])
	case "check-k3s":
		err = checkK3s(ctx, os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "homecloud-firstboot:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: homecloud-firstboot run|status|check-k3s [flags]")
	os.Exit(2)
}

// unitFlag collects --exec-unit NAME=ARGV for hosts without systemd.
type unitFlag map[string][]string

func (u unitFlag) String() string { return fmt.Sprint(map[string][]string(u)) }
func (u unitFlag) Set(s string) error {
	name, argv, ok := strings.Cut(s, "=")
	if !ok || name == "" || strings.TrimSpace(argv) == "" {
		return errors.New("want UNIT=COMMAND ARGS")
	}
	u[name] = strings.Fields(argv)
	return nil
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var o node.Options
	units := unitFlag{}
	fs.StringVar(&o.Root, "root", "/", "prefix of every host path the node reads or writes")
	fs.StringVar(&o.StateDir, "state-dir", "", "state directory (default ROOT/var/lib/homecloud)")
	fs.StringVar(&o.Interface, "iface", "", "LAN interface (default: the first Ethernet one)")
	fs.IntVar(&o.RaftPort, "raft-port", cluster.DefaultRaftPort, "raft and peer TLS port")
	fs.IntVar(&o.StatusPort, "status-port", cluster.DefaultStatusPort, "status HTTP port")
	fs.DurationVar(&o.QuorumAfter, "quorum-after", 10*time.Minute, "bootstrap with a majority when the other nodes have not appeared after this long (0: wait for all)")
	supervisor := fs.String("supervisor", "systemd", "how to start k3s and keepalived: systemd (D-Bus) or exec (child processes, for hosts without systemd)")
	fs.Var(units, "exec-unit", "with --supervisor exec: UNIT=COMMAND ARGS (repeatable)")
	logDir := fs.String("exec-log-dir", "", "with --supervisor exec: where child logs go (default STATE/logs)")
	check := fs.String("check", "", "keepalived track script command (default: this binary's check-k3s)")
	debug := fs.Bool("debug", false, "debug logs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	o.Logger = node.NewJournalLogger(os.Stderr, level)
	o.PrepOS = true
	// Fault injection for the cluster tests; see node.Options.CrashAt.
	o.CrashAt = os.Getenv("HOMECLOUD_TEST_CRASH_AT")
	o.Notify = func(s string) { daemon.SdNotify(false, s) }
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o.CheckArgv = []string{self, "check-k3s", "--root", o.Root}
	if *check != "" {
		o.CheckArgv = strings.Fields(*check)
	}
	switch *supervisor {
	case "systemd":
		m, err := svc.Systemd(ctx)
		if err != nil {
			return err
		}
		defer m.Close()
		o.Services = m
	case "exec":
		dir := *logDir
		if dir == "" {
			dir = o.StateDir
			if dir == "" {
				dir = o.Root + cluster.StateDir
			}
			dir += "/logs"
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		m := svc.Exec(units, dir)
		defer func() {
			for u := range units {
				m.Stop(context.Background(), u)
			}
		}()
		o.Services = m
	default:
		return fmt.Errorf("--supervisor %q: want systemd or exec", *supervisor)
	}
	n, err := node.Load(o)
	if err != nil {
		o.Logger.Error("cannot start", "err", err)
		return err
	}
	return n.Run(ctx)
}

func showStatus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	addr := fs.String("addr", fmt.Sprintf("127.0.0.1:%d", cluster.DefaultStatusPort), "status endpoint host:port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := status.Fetch(ctx, "http://"+*addr+"/status")
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func checkK3s(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("check-k3s", flag.ContinueOnError)
	root := fs.String("root", "/", "root prefix")
	addr := fs.String("addr", "", "API address (default: node-ip from the k3s config, where peers and the VIP's clients reach it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cfg, err := k3s.ReadyTLS(*root)
	if err != nil {
		return err
	}
	var a netip.Addr
	if *addr == "" {
		a, err = k3s.NodeIP(*root)
	} else if a, err = netip.ParseAddr(*addr); err != nil {
		err = fmt.Errorf("--addr: %w", err)
	}
	if err != nil {
		return err
	}
	return k3s.WaitReady(ctx, k3s.ReadyzURL(a), cfg)
}
