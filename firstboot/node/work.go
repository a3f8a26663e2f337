package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/homecloud/homecloud/firstboot/k3s"
	"github.com/homecloud/homecloud/firstboot/keepalived"
	"github.com/homecloud/homecloud/firstboot/plan"
	"github.com/homecloud/homecloud/firstboot/status"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/overlays/stack"
)

func (n *Node) setPlan(p plan.Plan) {
	b, _ := json.Marshal(p)
	n.board.Update(func(v *status.View) { v.Plan = b; v.Role = p.Role(n.cfg.Name) })
}

// addrOf maps plan members to their addresses from the raft configuration.
func (n *Node) addrOf() (map[string]netip.Addr, error) {
	ms, err := n.raft.Members()
	if err != nil {
		return nil, err
	}
	out := map[string]netip.Addr{}
	for _, m := range ms {
		host, _, err := net.SplitHostPort(m.Addr)
		if err != nil {
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil {
			out[m.ID] = a
		}
	}
	return out, nil
}

func (n *Node) k3sParams(p plan.Plan) (k3s.Params, error) {
	token, err := k3s.LoadToken(n.opts.path(cluster.K3sTokenPath))
	if err != nil {
		return k3s.Params{}, err
	}
	addrs, err := n.addrOf()
	if err != nil {
		return k3s.Params{}, err
	}
	kp := k3s.Params{
		Self:       k3s.Node{Name: n.cfg.Name, Addr: n.addr},
		InitServer: p.ClusterInit,
		Token:      token,
		Domain:     n.cfg.Domain,
		Iface:      n.iface,
	}
	if n.opts.Root != "/" {
		kp.DataDir = n.opts.path(k3s.DataDir)
	}
	if n.cfg.VIP != "" {
		kp.VIP = netip.MustParseAddr(n.cfg.VIP)
	}
	for _, s := range p.Servers {
		a, ok := addrs[s]
		if !ok {
			return k3s.Params{}, fmt.Errorf("plan names server %s, which is not in the raft membership", s)
		}
		kp.Servers = append(kp.Servers, k3s.Node{Name: s, Addr: a})
	}
	return kp, nil
}

// k3s: write the config for our role and start k3s, the init server
// first: the others wait for its API before they start.
func (n *Node) k3s(ctx context.Context) error {
	p, _ := n.raft.Plan()
	kp, err := n.k3sParams(p)
	if err != nil {
		return err
	}
	joined := slices.Contains(n.prog.Done, "k3s")
	if kp.Role() == k3s.Server && joined {
		n.warnIfMoved()
	}
	changed, err := k3s.WriteConfig(n.opts.Root, kp)
	if err != nil {
		return err
	}
	var initAddr netip.Addr
	for _, s := range kp.Servers {
		if s.Name == p.ClusterInit {
			initAddr = s.Addr
		}
	}
	role := kp.Role()
	// Only a first join needs the init server. A node whose k3s joined
	// before holds the cluster's state (a server its etcd member, an agent
	// its list of servers): after a power cut with the init server dead,
	// the survivors must come back without it.
	if p.ClusterInit != n.cfg.Name && !joined {
		n.log.Info("waiting for the init server", "server", p.ClusterInit)
		if err := n.waitAPI(ctx, initAddr, k3s.WaitAnswering); err != nil {
			return fmt.Errorf("init server %s: %w", p.ClusterInit, err)
		}
	}
	if changed {
		// A running k3s reads its config only at start.
		if err := n.opts.Services.Stop(ctx, role.Unit()); err != nil {
			n.log.Warn("stop k3s for new config", "err", err)
		}
	}
	if err := n.opts.Services.Start(ctx, role.Unit()); err != nil {
		return fmt.Errorf("start %s: %w", role.Unit(), err)
	}
	// A server is ready when its own API says so; an agent has no API and
	// no admin credentials: it is up once a server answers it.
	if role == k3s.Server {
		err = n.waitAPI(ctx, n.addr, k3s.WaitReady)
	} else {
		err = n.waitAnyAPI(ctx, kp.Servers)
	}
	if err != nil {
		return fmt.Errorf("k3s not ready: %w", err)
	}
	n.log.Info("k3s ready", "role", role)
	if n.prog.K3sAddr == "" {
		n.prog.K3sAddr = n.addr.String() // saved with the step's end
	}
	return nil
}

// warnIfMoved tells the user when this server's k3s joined at another
// address: raft, the firewall and keepalived follow the move, but k3s'
// etcd knows its members by address and will not take it back
// (k3s-io/k3s#11778); the board needs its old address again.
func (n *Node) warnIfMoved() {
	was, err := netip.ParseAddr(n.prog.K3sAddr)
	if err != nil { // joined before the address was kept: the config has it until rewritten
		if was, err = k3s.NodeIP(n.opts.Root); err != nil {
			return
		}
	}
	if was == n.addr {
		return
	}
	msg := fmt.Sprintf("k3s joined the cluster's etcd at %s and this server is now at %s: etcd does not take a member back at a new address (k3s-io/k3s#11778); give this board %s again (a DHCP reservation by its MAC)", was, n.addr, was)
	n.log.Warn(msg)
	n.board.Update(func(v *status.View) { v.Warning = msg })
}

// waitAnyAPI waits until one of the servers' APIs answers.
func (n *Node) waitAnyAPI(ctx context.Context, servers []k3s.Node) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errs <- n.waitAPI(ctx, s.Addr, k3s.WaitAnswering) }()
	}
	err := errors.New("no k3s server in the plan")
	for range servers {
		if err = <-errs; err == nil {
			return nil
		}
	}
	return err
}

// waitAPI polls a k3s API with the credentials k3s leaves on this node,
// which appear only once k3s has started: retry until they exist.
func (n *Node) waitAPI(ctx context.Context, addr netip.Addr, wait func(context.Context, string, *tls.Config) error) error {
	for {
		cfg, err := k3s.ReadyTLS(n.opts.Root)
		if err == nil {
			return wait(ctx, k3s.ReadyzURL(addr), cfg)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// deploy: servers write the service stack into k3s' auto-deploy folder,
// which k3s applies by itself; identical files on every server are
// harmless, and any server can go on alone.
func (n *Node) deploy(ctx context.Context) error {
	p, _ := n.raft.Plan()
	if p.Role(n.cfg.Name) != "server" {
		return nil
	}
	dir := n.opts.path(k3s.ManifestsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("manifests dir: %w", err)
	}
	docs, err := n.manifests(p)
	if err != nil {
		return err
	}
	for name, b := range docs {
		if err := cluster.WriteFileAtomic(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	removed, err := pruneManifests(dir, docs)
	if len(removed) > 0 {
		n.log.Info("removed manifests of services no longer in the stack", "files", removed)
	}
	return err
}

// pruneManifests deletes our manifests (homecloud-*.yaml) that keep does
// not name: a service switched off after a rebuild must not be applied
// again by k3s on its next start. Files of other origins stay.
func pruneManifests(dir string, keep map[string][]byte) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("manifests dir: %w", err)
	}
	var removed []string
	for _, e := range ents {
		name := e.Name()
		if _, ok := keep[name]; ok || e.IsDir() || !strings.HasPrefix(name, "homecloud-") || !strings.HasSuffix(name, ".yaml") {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return removed, fmt.Errorf("remove stale manifest: %w", err)
		}
		removed = append(removed, name)
	}
	return removed, nil
}

// manifests is the stack to deploy: the cluster's own record (a
// namespace and the plan, which shows in kubectl that the stack landed)
// and the service stack rendered from the config the builder baked in.
// An image without that config (older builder, test roots) deploys the
// record alone.
func (n *Node) manifests(p plan.Plan) (map[string][]byte, error) {
	pj, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	doc := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: homecloud
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: homecloud-plan
  namespace: homecloud
data:
  plan.json: %q
`, pj)
	docs := map[string][]byte{"homecloud-00-plan.yaml": []byte(doc)}
	cfg, err := stack.LoadConfig(n.opts.path(stack.ConfigPath))
	if errors.Is(err, fs.ErrNotExist) {
		n.log.Warn("no stack config in this image: deploying the plan record only", "path", stack.ConfigPath)
		return docs, nil
	}
	if err != nil {
		return nil, err
	}
	files, err := stack.Render(stack.Input{Config: cfg, Topology: stack.Topology{
		Servers: p.Servers, Agents: p.Agents, DataDiskNode: p.DataDiskNode}})
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		docs[f.Name] = f.Data
	}
	return docs, nil
}

// serve: say so and keep the cluster's view current.
func (n *Node) serve(ctx context.Context) error {
	n.notify("STATUS=serving")
	go n.watchPlan(ctx)
	go n.watchVIP(ctx)
	return nil
}

// watchPlan follows plan changes (a node added or replaced) and moves of
// the plan's servers (a new DHCP lease: raft's leader updates the member's
// address, the plan stays the same): keepalived's peers and priorities
// follow both. A failed update is retried on the next tick; applyVIP
// rewrites keepalived.conf and restarts keepalived only when the config
// changed.
func (n *Node) watchPlan(ctx context.Context) {
	var (
		last      plan.Plan
		lastPeers []keepalived.Node
		applied   bool
		lastErr   string
	)
	every(ctx, time.Second, func() {
		p, ok := n.raft.Plan()
		if !ok {
			return
		}
		addrs, err := n.addrOf()
		if err != nil {
			return // the membership is unreadable now: next tick
		}
		peers := vipMembers(p, addrs)
		planChanged := !applied || !p.Equal(last)
		if !planChanged && slices.Equal(peers, lastPeers) {
			return
		}
		if planChanged {
			n.setPlan(p)
		}
		if err := n.applyVIP(ctx, p); err != nil {
			if err.Error() != lastErr {
				n.log.Warn("update keepalived", "err", err)
				lastErr = err.Error()
			}
			return
		}
		if applied && !planChanged {
			n.log.Info("servers moved: keepalived follows", "servers", peers)
		}
		last, lastPeers, applied, lastErr = p, peers, true, ""
	})
}

// probe fills the live fields of the status view.
func (n *Node) probe(ctx context.Context, v *status.View) {
	if n.raft != nil {
		v.Leader, _ = n.raft.Leader()
		if ms, err := n.raft.Members(); err == nil {
			v.Members = v.Members[:0]
			for _, m := range ms {
				v.Members = append(v.Members, status.Member{ID: m.ID, Addr: m.Addr, Voter: m.Voter})
			}
		}
	}
	if n.watcher != nil {
		v.Peers = n.viewPeers()
	}
	v.HoldsVIP = n.holdsVIP()
	if v.HoldsVIP {
		v.VIPHolder = n.cfg.Name
	} else if v.VIPHolder == n.cfg.Name {
		v.VIPHolder = ""
	}
}
