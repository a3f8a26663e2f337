// Package qemu boots homecloud disk images as arm64 virtual machines under
// qemu-system-aarch64 (TCG) for the boot tests: QEMU's virt machine with a
// Cortex-A53, the kernel and initrd taken from the image's own /boot, the
// image behind a qcow2 overlay so it stays untouched, the serial console
// streamed to a file, a QMP socket for reset and quit, an optional shared
// virtual LAN (a hub in the test process, which can also play the home
// router's DHCP server) and host port forwards that reach nothing but the
// guest.
//
// hugelgupf/vmtest's qemu package was considered and not used: it has no QMP
// (so no system_reset or clean quit), drives the console through a pty with
// go-expect, and its inter-VM network is a point-to-point stream socket that
// joins two VMs, not the three to five a cluster test needs.
package qemu

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

// Defaults for Config fields left zero.
const (
	DefaultMemMiB = 768
	DefaultCPUs   = 1
	// DefaultAppend is the kernel command line of the Armbian-layout images
	// (root labelled armbi_root, console on the virt machine's PL011).
	DefaultAppend = "root=LABEL=armbi_root rootwait console=ttyAMA0"
)

// Config describes one VM.
type Config struct {
	Name   string // names the VM in errors and its LAN port; [a-z0-9-]
	Image  string // raw disk image; only read, through a qcow2 overlay
	Kernel string // e.g. from ExtractBoot
	Initrd string
	Append string // kernel command line; DefaultAppend if empty

	MemMiB int // DefaultMemMiB if zero
	CPUs   int // DefaultCPUs if zero

	LAN *LAN   // shared virtual network; nil = no LAN NIC
	MAC string // of the LAN NIC; derived from Name if empty

	// Forward maps guest TCP ports to host ports on 127.0.0.1 (0 = QEMU
	// picks a free one; see VM.HostPort). They go through a second NIC on a
	// user-mode network with restrict=on, so the guest cannot reach out.
	Forward map[int]int

	SerialLog string // console output; WorkDir/console.log if empty
	// WorkDir holds the overlay disk.qcow2, qmp.sock and qemu.log. An
	// overlay already there is reused: a VM started again in the same
	// WorkDir finds its disk as it was left, like a board powered back on.
	WorkDir string
}

// Available reports why VMs cannot be started here, or nil.
func Available() error {
	var missing []string
	for _, t := range []struct{ bin, pkg string }{
		{"qemu-system-aarch64", "qemu-system-arm"},
		{"qemu-img", "qemu-utils"},
	} {
		if _, err := exec.LookPath(t.bin); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t.bin, t.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("qemu: missing %s: apt-get install qemu-system-arm qemu-utils", strings.Join(missing, ", "))
	}
	return nil
}

// paths are the files a VM's argv names besides the Config's own.
type paths struct {
	overlay, qmp, serial string
	lanLocal, lanHub     string // empty without a LAN
}

// withDefaults fills zero fields and checks the rest.
func (c Config) withDefaults() (Config, error) {
	if c.Name == "" || strings.Trim(c.Name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return c, fmt.Errorf("qemu: VM name %q: use lower-case letters, digits and '-'", c.Name)
	}
	if c.Image == "" {
		return c, fmt.Errorf("qemu: VM %s: no Image: give the raw disk image to boot", c.Name)
	}
	if c.Kernel == "" || c.Initrd == "" {
		return c, fmt.Errorf("qemu: VM %s: Kernel and Initrd are required: take them from the image with ExtractBoot", c.Name)
	}
	if c.WorkDir == "" {
		return c, fmt.Errorf("qemu: VM %s: no WorkDir for the overlay and QMP socket", c.Name)
	}
	if c.Append == "" {
		c.Append = DefaultAppend
	}
	if c.MemMiB == 0 {
		c.MemMiB = DefaultMemMiB
	}
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	if c.MemMiB < 128 || c.CPUs < 1 || c.CPUs > 8 {
		return c, fmt.Errorf("qemu: VM %s: MemMiB %d, CPUs %d: want MemMiB >= 128 and 1..8 CPUs", c.Name, c.MemMiB, c.CPUs)
	}
	if c.LAN != nil {
		if c.MAC == "" {
			c.MAC = macFor(c.Name)
		}
		hw, err := net.ParseMAC(c.MAC)
		if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
			return c, fmt.Errorf("qemu: VM %s: MAC %q: want a unicast Ethernet address like 02:00:00:00:00:01", c.Name, c.MAC)
		}
		c.MAC = hw.String()
	}
	for g, h := range c.Forward {
		if g < 1 || g > 65535 || h < 0 || h > 65535 {
			return c, fmt.Errorf("qemu: VM %s: forward guest %d -> host %d: ports must be 1..65535 (host 0 = pick one)", c.Name, g, h)
		}
	}
	return c, nil
}

// macFor derives a stable, locally administered MAC from a VM name, so VMs
// on one LAN never share QEMU's default 52:54:00:12:34:56.
func macFor(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	s := h.Sum32()
	return net.HardwareAddr{0x02, 0x48, byte(s >> 24), byte(s >> 16), byte(s >> 8), byte(s)}.String()
}

// args builds QEMU's argv (without the binary) for c, which has defaults.
func (c Config) args(p paths) []string {
	a := []string{
		"-name", c.Name,
		// TCG: -cpu max is 3-4x slower under TCG (DESIGN.md §6).
		"-M", "virt", "-cpu", "cortex-a53",
		"-m", strconv.Itoa(c.MemMiB), "-smp", strconv.Itoa(c.CPUs),
		// No default NIC, serial or monitor: every device is named below.
		"-nodefaults", "-display", "none",
		"-serial", "file:" + p.serial,
		"-qmp", "unix:" + p.qmp + ",server=on,wait=off",
		"-kernel", c.Kernel, "-initrd", c.Initrd, "-append", c.Append,
		// Default cache=writeback: qcow2 metadata is flushed when the guest
		// flushes, so the overlay survives a SIGKILL of QEMU.
		"-drive", "if=none,id=disk0,format=qcow2,file=" + p.overlay,
		"-device", "virtio-blk-pci,drive=disk0",
	}
	// Without a NIC the guest still boots; -nodefaults already means no
	// default user-mode NIC, but say so for anyone reading the argv.
	if c.LAN == nil && len(c.Forward) == 0 {
		a = append(a, "-nic", "none")
	}
	if c.LAN != nil {
		a = append(a,
			"-netdev", "dgram,id=lan,local.type=unix,local.path="+p.lanLocal+",remote.type=unix,remote.path="+p.lanHub,
			"-device", "virtio-net-pci,netdev=lan,mac="+c.MAC)
	}
	if len(c.Forward) > 0 {
		guests := make([]int, 0, len(c.Forward))
		for g := range c.Forward {
			guests = append(guests, g)
		}
		sort.Ints(guests)
		nd := "user,id=fwd,restrict=on"
		for _, g := range guests {
			nd += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", c.Forward[g], g)
		}
		// An e1000, not virtio: the image's own network config claims
		// every NIC of the board's driver (virtio_net on qemu-virt) as
		// the LAN, and the host's port into the VM must stay apart, on
		// the base's catch-all DHCP config.
		a = append(a, "-netdev", nd, "-device", "e1000,netdev=fwd")
	}
	return a
}

// unixPathMax is sun_path's size on Linux, including the trailing NUL.
const unixPathMax = 108

func checkSocketPath(p string) error {
	if len(p) >= unixPathMax {
		return fmt.Errorf("socket path %s is %d bytes, over the %d that unix sockets allow: use a shorter directory", p, len(p), unixPathMax-1)
	}
	return nil
}

var errExited = errors.New("qemu exited")
