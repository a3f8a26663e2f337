// Package osprep does, once on a fresh node, what the builder left to the
// node because it is easier done natively: the hostname, installing the
// baked .debs, holding the board's kernel and boot packages, and swap off.
// Every path sits under Root, so tests run it on a directory.
package osprep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/homecloud/homecloud/internal/cluster"
)

// Prep runs the first-boot OS tasks under Root.
type Prep struct {
	Root   string
	Logger *slog.Logger
}

// Live reports whether Prep acts on the running system rather than a
// directory: only then may it change kernel state (hostname, swap).
func (p *Prep) Live() bool { return p.Root == "" || p.Root == "/" }

func (p *Prep) path(s string) string { return filepath.Join(p.rootDir(), s) }

func (p *Prep) rootDir() string {
	if p.Root == "" {
		return "/"
	}
	return p.Root
}

func (p *Prep) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// Hostname sets /etc/hostname (and the kernel's, when live) and makes the
// name resolve locally, as Debian does with 127.0.1.1. Both files are
// replaced atomically (temp file, fsync, rename): written in place, a
// power cut could leave them empty. The hosts rewrite is also a repair: a
// file that lost its loopback lines gets them back.
func (p *Prep) Hostname(ctx context.Context, name string) error {
	hf := p.path("/etc/hostname")
	if cur, _ := os.ReadFile(hf); strings.TrimSpace(string(cur)) != name {
		if err := cluster.ReplaceFile(hf, []byte(name+"\n"), 0o644); err != nil {
			return err
		}
	}
	hosts := p.path("/etc/hosts")
	old, err := os.ReadFile(hosts)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", hosts, err)
	}
	if b := hostsFile(old, name); !bytes.Equal(b, old) {
		if err := cluster.ReplaceFile(hosts, b, 0o644); err != nil {
			return err
		}
	}
	if p.Live() {
		if err := run(ctx, "hostname", name); err != nil {
			return err
		}
	}
	return nil
}

// loopbackNames are the names Debian's /etc/hosts gives the loopback
// addresses; resolvers and tools (sudo, k3s' own lookups) count on them.
var loopbackNames = []struct {
	addr  string
	names []string
}{
	{"127.0.0.1", []string{"localhost"}},
	{"::1", []string{"localhost", "ip6-localhost", "ip6-loopback"}},
}

// hostsFile is /etc/hosts with name on 127.0.1.1 (in place of any
// earlier 127.0.1.1 line, else after the 127.0.0.1 line) and the loopback
// names of loopbackNames present: missing ones are added, 127.0.0.1 at the
// top and ::1 after the 127.0.1.1 line, so an empty or truncated file
// heals. Every other line stays as it was. hostsFile(hostsFile(b)) is
// hostsFile(b).
func hostsFile(old []byte, name string) []byte {
	text := strings.TrimRight(strings.ReplaceAll(string(old), "\r\n", "\n"), "\n")
	var lines []string
	if text != "" {
		lines = strings.Split(text, "\n")
	}
	mapped := map[string]bool{} // "addr name" pairs already in the file
	own := "127.0.1.1\t" + name
	var out []string
	ownAt, v4At := -1, -1
	for _, l := range lines {
		addr, names := hostsEntry(l)
		if addr == "127.0.1.1" {
			if ownAt < 0 {
				ownAt = len(out)
				out = append(out, own)
			}
			continue
		}
		for _, n := range names {
			mapped[addr+" "+n] = true
		}
		if addr == "127.0.0.1" && v4At < 0 {
			v4At = len(out)
		}
		out = append(out, l)
	}
	var missing [][]string // per loopbackNames entry
	for _, lb := range loopbackNames {
		var m []string
		for _, n := range lb.names {
			if !mapped[lb.addr+" "+n] {
				m = append(m, n)
			}
		}
		missing = append(missing, m)
	}
	if m := missing[0]; len(m) > 0 {
		out = slices.Insert(out, 0, "127.0.0.1\t"+strings.Join(m, " "))
		if ownAt >= 0 {
			ownAt++
		}
		if v4At < 0 {
			v4At = 0
		} else {
			v4At++
		}
	}
	if ownAt < 0 {
		ownAt = v4At + 1
		out = slices.Insert(out, ownAt, own)
	}
	if m := missing[1]; len(m) > 0 {
		out = slices.Insert(out, ownAt+1, "::1\t"+strings.Join(m, " "))
	}
	return []byte(strings.Join(out, "\n") + "\n")
}

// hostsEntry splits a hosts line into its address and names, without
// its comment; a blank or comment line has no address.
func hostsEntry(line string) (addr string, names []string) {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", nil
	}
	return f[0], f[1:]
}

// InstallDebs installs every .deb in dir (a path inside Root) whose package
// is not installed at that version yet, in one dpkg run so dependencies
// among them resolve.
func (p *Prep) InstallDebs(ctx context.Context, dir string) ([]string, error) {
	debs, err := filepath.Glob(filepath.Join(p.path(dir), "*.deb"))
	if err != nil || len(debs) == 0 {
		return nil, err
	}
	sort.Strings(debs)
	// A power cut in an earlier run can stop dpkg after our packages were
	// unpacked and configured but before the triggers they set off ran
	// (open-iscsi's initramfs rebuild takes minutes): settle whatever dpkg
	// left pending first; with nothing pending it does nothing.
	if err := run(ctx, "dpkg", append(p.dpkgRoot(), "--force-confold", "--configure", "-a")...); err != nil {
		return nil, fmt.Errorf("finish what an earlier dpkg run left: %w", err)
	}
	var todo []deb
	for _, d := range debs {
		out, err := output(ctx, "dpkg-deb", "-f", d, "Package", "Version", "Pre-Depends")
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", d, err)
		}
		f := parseFields(out)
		if p.installed(ctx, f["Package"]) == f["Version"] {
			continue
		}
		todo = append(todo, deb{path: d, name: f["Package"], version: f["Version"], preDepends: relationNames(f["Pre-Depends"])})
	}
	if len(todo) == 0 {
		return nil, nil
	}
	// dpkg -i unpacks in argument order and refuses a package whose
	// Pre-Depends is not configured yet (python3-minimal before
	// python3.11-minimal): install in rounds, each after what it
	// pre-depends on. A round may leave packages unconfigured for want of
	// a later one; the closing --configure -a settles them all.
	var names []string
	rounds := preDependRounds(todo)
	for i, round := range rounds {
		args := append(p.dpkgRoot(), "--force-confold", "-i")
		for _, d := range round {
			args = append(args, d.path)
			names = append(names, d.name)
		}
		if err := run(ctx, "dpkg", args...); err != nil && i == len(rounds)-1 {
			return nil, fmt.Errorf("install %s: %w", strings.Join(names, " "), err)
		}
	}
	if len(rounds) > 1 {
		if err := run(ctx, "dpkg", append(p.dpkgRoot(), "--force-confold", "--configure", "-a")...); err != nil {
			return nil, fmt.Errorf("install %s: %w", strings.Join(names, " "), err)
		}
	}
	// An early round's failure was let pass for its dependencies' sake;
	// what counts is that every package ends up installed.
	for _, d := range todo {
		if got := p.installed(ctx, d.name); got != d.version {
			return nil, fmt.Errorf("install %s: %s is not installed after dpkg (have %q, want %s)", strings.Join(names, " "), d.name, got, d.version)
		}
	}
	sort.Strings(names)
	p.log().Info("installed baked packages", "packages", strings.Join(names, " "))
	return names, nil
}

type deb struct {
	path, name, version string
	preDepends          []string
}

// preDependRounds groups debs so that every package comes in a later
// round than the packages of debs it pre-depends on (a cycle, which
// Debian forbids for Pre-Depends, ends up in the last round).
func preDependRounds(debs []deb) [][]deb {
	byName := map[string]deb{}
	for _, d := range debs {
		byName[d.name] = d
	}
	depth := map[string]int{}
	var walk func(name string, seen map[string]bool) int
	walk = func(name string, seen map[string]bool) int {
		if d, ok := depth[name]; ok {
			return d
		}
		if seen[name] {
			return 0
		}
		seen[name] = true
		level := 0
		for _, dep := range byName[name].preDepends {
			if _, ok := byName[dep]; ok && dep != name {
				level = max(level, walk(dep, seen)+1)
			}
		}
		depth[name] = level
		return level
	}
	var rounds [][]deb
	for _, d := range debs {
		l := walk(d.name, map[string]bool{})
		for len(rounds) <= l {
			rounds = append(rounds, nil)
		}
		rounds[l] = append(rounds[l], d)
	}
	return rounds
}

// parseFields reads "Name: value" lines as dpkg-deb -f prints them.
func parseFields(out string) map[string]string {
	f := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			f[k] = strings.TrimSpace(v)
		}
	}
	return f
}

// relationNames are the package names in a Depends-style field
// ("libc6 (>= 2.34), python3.11-minimal:any | foo").
func relationNames(field string) []string {
	var out []string
	for _, alt := range strings.FieldsFunc(field, func(r rune) bool { return r == ',' || r == '|' }) {
		if f := strings.Fields(alt); len(f) > 0 {
			out = append(out, strings.SplitN(f[0], ":", 2)[0])
		}
	}
	return out
}

func (p *Prep) installed(ctx context.Context, pkg string) string {
	args := append(p.dpkgRoot(), "-W", "-f", "${db:Status-Abbrev}${Version}", pkg)
	out, err := output(ctx, "dpkg-query", args...)
	if err != nil || !strings.HasPrefix(out, "ii ") {
		return ""
	}
	return strings.TrimSpace(strings.TrimPrefix(out, "ii "))
}

func (p *Prep) dpkgRoot() []string {
	if p.Live() {
		return nil
	}
	return []string{"--root=" + p.Root}
}

// Hold keeps the named packages at their version, as `apt-mark hold` does
// (apt-mark writes dpkg selections; dpkg takes --root, apt-mark does not).
// Packages that are not installed are skipped: boards differ.
func (p *Prep) Hold(ctx context.Context, pkgs []string) ([]string, error) {
	var sel bytes.Buffer
	var held []string
	for _, pkg := range pkgs {
		if p.installed(ctx, pkg) != "" {
			fmt.Fprintf(&sel, "%s hold\n", pkg)
			held = append(held, pkg)
		}
	}
	if len(held) == 0 {
		return nil, nil
	}
	cmd := exec.CommandContext(ctx, "dpkg", append(p.dpkgRoot(), "--set-selections")...)
	cmd.Stdin = &sel
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("hold %s: %w: %s", strings.Join(held, " "), err, out)
	}
	return held, nil
}

// SwapOff masks swap.target so no disk swap comes back at boot (kubelet
// refuses to run with swap; SD cards wear out), and turns swap off now
// when live. zram is not touched: it is memory, not the card.
func (p *Prep) SwapOff(ctx context.Context) error {
	mask := p.path("/etc/systemd/system/swap.target")
	if t, err := os.Readlink(mask); err != nil || t != "/dev/null" {
		if err := os.MkdirAll(filepath.Dir(mask), 0o755); err != nil {
			return err
		}
		os.Remove(mask)
		if err := os.Symlink("/dev/null", mask); err != nil {
			return fmt.Errorf("mask swap.target: %w", err)
		}
	}
	if p.Live() {
		swaps, _ := os.ReadFile("/proc/swaps")
		for _, l := range strings.Split(string(swaps), "\n")[1:] {
			f := strings.Fields(l)
			if len(f) > 0 && !strings.HasPrefix(f[0], "/dev/zram") {
				if err := run(ctx, "swapoff", f[0]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) error {
	_, err := output(ctx, name, args...)
	return err
}

func output(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}
