package build

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/homecloud/homecloud/builder/debarchive"
	"github.com/homecloud/homecloud/builder/ext4fs"
	"github.com/homecloud/homecloud/builder/spec"
)

// Where systemd looks for units shipped by packages, in the order
// systemctl enable resolves them on Debian 12 (its links point into
// /lib/systemd/system).
func vendorUnitDirs() []string { return []string{"/lib/systemd/system", "/usr/lib/systemd/system"} }

const etcUnitDir = "/etc/systemd/system"

// baseRootFS is what the builder needs to know about the base's root fs,
// read once (without writing) before any image is made.
type baseRootFS struct {
	armbian bool
	// installed are the base's dpkg packages (nil: no dpkg status).
	installed map[string]bool
	// units are the vendor units to enable, with their [Install] links.
	units []unitLinks
	// masks are units to mask (Armbian first-run services, NetworkManager).
	masks []string
	// links are other symlinks to make, as {target, link}.
	links [][2]string
	// remove are files to delete (Armbian's first-login marker, masks of
	// the units our network needs).
	remove []string
	// noAutologin are getty drop-ins that undo a root autologin.
	noAutologin []file
	// armbianFiles are drop-ins that fit our settings to Armbian's.
	armbianFiles []file
	// machineID is true when the base carries a machine-id every clone
	// would share.
	machineID bool
	// free is the root fs's free space in bytes.
	free int64
	// warnings are what the build goes on with but the user should know.
	warnings []string
}

type file struct {
	path string
	data []byte
	mode fs.FileMode
}

// unitLinks are the symlinks systemctl enable makes for one unit.
type unitLinks struct {
	unit  string
	links [][2]string // {target, link}
}

// armbianJournalDropIn sorts after overlays' homecloud.conf, so its
// SystemMaxUse wins.
const armbianJournalDropIn = "/etc/systemd/journald.conf.d/zz-homecloud-armbian.conf"

// armbianJournal keeps the journal within Armbian's RAM log: Armbian holds
// /var/log in a 50 MB compressed-RAM disk (armbian-ramlog) synced to the
// card, caps the journal at 20 MB itself (armbian-zram-config), and rotates
// and empties every log once /var/log is 75 % full; our 64 MB would keep
// it there, emptying the logs every 15 minutes.
func armbianJournal() []byte {
	return []byte("# Within Armbian's 50 MB RAM log (armbian-ramlog); see builder/build/rootfs.go.\n[Journal]\nSystemMaxUse=20M\n")
}

// Armbian's first-run pieces: the marker that starts the interactive
// first login (password change, user creation), and the services that
// regenerate SSH host keys and read /boot/armbian_first_run.txt, which
// would replace the node's pinned host key.
func armbianFirstLoginMarker() string { return "/root/.not_logged_in_yet" }
func armbianFirstRunUnits() []string {
	return []string{"armbian-firstrun.service", "armbian-firstrun-config.service"}
}

// NetworkManager runs the network on every Armbian image but the minimal
// one (which the README names). The nodes' network is systemd-networkd's:
// the per-node address, gateway and DNS are networkd files, and the two
// daemons would both configure the Ethernet port. So NetworkManager is
// masked, networkd and resolved (networkd hands resolved the DNS servers)
// are unmasked and enabled, and /etc/resolv.conf, which NetworkManager
// wrote, becomes resolved's stub, as on the minimal image.
func networkManagerUnits() []string {
	return []string{"NetworkManager.service", "NetworkManager-wait-online.service"}
}
func networkdUnits() []string {
	return []string{"systemd-networkd.service", "systemd-networkd.socket", "systemd-resolved.service"}
}

const resolvedStub = "../run/systemd/resolve/stub-resolv.conf"

// Getty units and the drop-in names Armbian (and others) use for a root
// autologin.
func gettyUnits() []string { return []string{"serial-getty@.service", "getty@.service"} }
func autologinDropIns() []string {
	return []string{"override.conf", "autologin.conf", "10-autologin.conf"}
}

// noAutologinDropIn sorts after every autologin drop-in, so its ExecStart
// reset wins.
const noAutologinDropIn = "zz-homecloud-no-autologin.conf"

func inspectRootFS(ctx context.Context, image string, offset int64) (baseRootFS, error) {
	var r baseRootFS
	fsys, err := ext4fs.Open(ctx, image, offset)
	if err != nil {
		return r, err
	}
	defer fsys.Close()
	if r.free, err = ext4fs.FreeBytes(image, offset); err != nil {
		return r, err
	}
	if r.armbian, err = fsys.Exists("/etc/armbian-release"); err != nil {
		return r, err
	}
	if r.armbian {
		r.armbianFiles = append(r.armbianFiles, file{path: armbianJournalDropIn, data: armbianJournal(), mode: 0o644})
	}
	if ok, err := fsys.Exists(armbianFirstLoginMarker()); err != nil {
		return r, err
	} else if ok {
		r.remove = append(r.remove, armbianFirstLoginMarker())
	}
	for _, u := range armbianFirstRunUnits() {
		if ok, err := hasUnit(fsys, u); err != nil {
			return r, err
		} else if ok {
			r.masks = append(r.masks, u)
		}
	}
	if err := r.networkdNotNetworkManager(fsys); err != nil {
		return r, err
	}
	if r.noAutologin, err = autologinFixes(fsys); err != nil {
		return r, err
	}
	// What the base has installed, so the .debs bring exactly what it
	// lacks (a minimal base has fewer than Debian's priorities promise).
	if st, err := fsys.ReadFile("/var/lib/dpkg/status"); err == nil {
		r.installed = debarchive.ParseStatus(st)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	id, err := fsys.ReadFile("/etc/machine-id")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	r.machineID = len(bytes.TrimSpace(id)) > 0
	return r, nil
}

// networkdNotNetworkManager makes systemd-networkd the base's network
// daemon (see networkManagerUnits).
func (r *baseRootFS) networkdNotNetworkManager(fsys ext4fs.FS) error {
	nm, err := hasUnit(fsys, networkManagerUnits()[0])
	if err != nil {
		return err
	}
	if nm {
		for _, u := range networkManagerUnits() {
			if ok, err := hasUnit(fsys, u); err != nil {
				return err
			} else if ok {
				r.masks = append(r.masks, u)
			}
		}
	}
	for _, u := range networkdUnits() {
		mask := path.Join(etcUnitDir, u)
		if target, err := fsys.Readlink(mask); err == nil && target == "/dev/null" {
			r.remove = append(r.remove, mask)
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ext4fs.ErrNotSymlink) {
			return err
		}
	}
	const resolved = "systemd-resolved.service"
	enable := []string{"systemd-networkd.service"}
	if nm {
		enable = append(enable, resolved)
	}
	for _, u := range enable {
		if ok, err := hasUnit(fsys, u); err != nil {
			return err
		} else if !ok {
			if u == resolved {
				r.warnings = append(r.warnings, "the base image runs NetworkManager and has no systemd-resolved: with NetworkManager masked, "+
					"nothing writes /etc/resolv.conf from the DNS servers networkd learns, so the nodes may resolve no names "+
					"(k3s could not pull the service stack's images): use Armbian's minimal image, or a base with systemd-resolved")
			}
			continue
		}
		links, err := enableLinks(fsys, u)
		if err != nil {
			return err
		}
		r.units = append(r.units, links...)
		if u == resolved {
			r.links = append(r.links, [2]string{resolvedStub, "/etc/resolv.conf"})
		}
	}
	return nil
}

// Room kept for what checkRootFSSpace does not count: the config files,
// keys, units and new directories (under 1 MiB together, each taking at
// least a block), the big files' last partial blocks (a block per file),
// and their extent or indirect blocks (with 4 KiB blocks one per 340
// extents or 1024 data blocks: well under 1%).
const (
	spaceMarginPercent = 1
	spaceMarginBytes   = 4 << 20
)

// checkRootFSSpace refuses a base whose root fs cannot take the node's
// files, before anything is written: debugfs would otherwise run out of
// blocks halfway through the first image, after --out was made. The
// blocks of base files that the node's files replace are not
// subtracted: that is rare, and leaving them out errs on the safe side.
func checkRootFSSpace(s *spec.Spec, in *inputs) error {
	need := int64(len(in.firstboot))
	paths := []string{in.k3s}
	if in.k3sImages != "" {
		paths = append(paths, in.k3sImages)
	}
	for _, d := range in.debs {
		paths = append(paths, d.path)
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		need += fi.Size()
	}
	need += need*spaceMarginPercent/100 + spaceMarginBytes
	if need <= in.rootfs.free {
		return nil
	}
	base := s.BaseImage
	if base == "" {
		base = "the " + in.board.Name + " base image"
	}
	const mib = 1 << 20
	return usage("--base-image", fmt.Errorf("%s: its root file system has %d MiB free, the node files need %d MiB (k3s, its images, the .debs, homecloud-firstboot, and %d%% + %d MiB for the small files and metadata): use a base with more free space, or grow this one (enlarge the image and its root partition, then resize2fs the root file system)",
		base, in.rootfs.free/mib, (need+mib-1)/mib, spaceMarginPercent, spaceMarginBytes/mib))
}

// hasUnit reports whether the base ships the vendor unit name.
func hasUnit(fsys ext4fs.FS, name string) (bool, error) {
	_, _, err := findUnit(fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// findUnit returns the path of a vendor unit and its contents.
func findUnit(fsys ext4fs.FS, name string) (string, []byte, error) {
	for _, d := range vendorUnitDirs() {
		p := path.Join(d, name)
		b, err := fsys.ReadFile(p)
		if err == nil {
			return p, b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("unit %s: %w", name, fs.ErrNotExist)
}

// enableLinks computes what systemctl enable name would link, following
// Also= to the units it names.
func enableLinks(fsys ext4fs.FS, name string) ([]unitLinks, error) {
	seen := map[string]bool{}
	var out []unitLinks
	queue := []string{name}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		if seen[u] {
			continue
		}
		seen[u] = true
		p, data, err := findUnit(fsys, u)
		if errors.Is(err, fs.ErrNotExist) && u != name {
			continue // systemctl skips a missing Also= unit too
		}
		if err != nil {
			return nil, err
		}
		inst := parseInstall(data)
		out = append(out, unitLinks{unit: u, links: inst.links(u, p)})
		queue = append(queue, inst.also...)
	}
	return out, nil
}

type install struct {
	wantedBy, requiredBy, alias, also []string
}

// parseInstall reads a unit's [Install] section (the keys systemctl
// enable acts on; continuation lines and specifiers are not used by the
// units enabled here).
func parseInstall(unit []byte) install {
	var in install
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line
			continue
		}
		if section != "[Install]" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		vals := strings.Fields(v)
		switch strings.TrimSpace(k) {
		case "WantedBy":
			in.wantedBy = append(in.wantedBy, vals...)
		case "RequiredBy":
			in.requiredBy = append(in.requiredBy, vals...)
		case "Alias":
			in.alias = append(in.alias, vals...)
		case "Also":
			in.also = append(in.also, vals...)
		}
	}
	return in
}

// links are the symlinks for a unit found at unitPath, as {target, link}.
func (in install) links(unit, unitPath string) [][2]string {
	var out [][2]string
	for _, t := range in.wantedBy {
		out = append(out, [2]string{unitPath, path.Join(etcUnitDir, t+".wants", unit)})
	}
	for _, t := range in.requiredBy {
		out = append(out, [2]string{unitPath, path.Join(etcUnitDir, t+".requires", unit)})
	}
	for _, a := range in.alias {
		out = append(out, [2]string{unitPath, path.Join(etcUnitDir, a)})
	}
	return out
}

// autologinFixes returns a drop-in per getty unit that has an autologin
// drop-in: it resets ExecStart to the unit's own, which has none.
func autologinFixes(fsys ext4fs.FS) ([]file, error) {
	var fixes []file
	for _, unit := range gettyUnits() {
		found := false
		for _, dir := range append([]string{etcUnitDir}, vendorUnitDirs()...) {
			for _, name := range autologinDropIns() {
				b, err := fsys.ReadFile(path.Join(dir, unit+".d", name))
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					return nil, err
				}
				if bytes.Contains(b, []byte("--autologin")) || bytes.Contains(b, []byte(" -a ")) {
					found = true
				}
			}
		}
		if !found {
			continue
		}
		_, data, err := findUnit(fsys, unit)
		if err != nil {
			return nil, fmt.Errorf("the base has an autologin drop-in for %s but not the unit itself: %w", unit, err)
		}
		var execs []string
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); strings.HasPrefix(l, "ExecStart=") && !strings.Contains(l, "--autologin") {
				execs = append(execs, l)
			}
		}
		if len(execs) == 0 {
			return nil, fmt.Errorf("%s in the base has no ExecStart without --autologin to restore", unit)
		}
		body := "# homecloud: no root autologin on the console (the base image had one).\n" +
			"# Resets ExecStart to the unit's own.\n[Service]\nExecStart=\n" + strings.Join(execs, "\n") + "\n"
		fixes = append(fixes, file{path: path.Join(etcUnitDir, unit+".d", noAutologinDropIn), data: []byte(body), mode: 0o644})
	}
	return fixes, nil
}
