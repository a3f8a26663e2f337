// Package boards holds one definition per supported board as data: what the
// builder needs to turn a base image into a bootable disk for it, and what
// the node service needs to know about the hardware. The definitions are
// YAML files embedded in the binary, so adding a board is adding a file.
package boards

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

//go:embed *.yaml
var definitions embed.FS

// Board is one board definition.
type Board struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Arch is the Debian architecture of the root fs (only arm64 today).
	Arch string `yaml:"arch"`
	SoC  SoC    `yaml:"soc"`
	// DTB is the device tree, relative to the kernel's dtb directory;
	// empty when the machine brings its own (QEMU).
	DTB string `yaml:"dtb"`
	// Console is the serial console as the kernel's console= takes it.
	Console string `yaml:"console"`
	// MemoryMiB is the board's RAM, which the builder holds the service
	// stack's memory requests against; 0 when it varies (a VM).
	MemoryMiB int  `yaml:"memory_mib"`
	Disk      Disk `yaml:"disk"`
	// UBoot is nil when the board needs no boot loader on the disk.
	UBoot        *UBoot    `yaml:"uboot"`
	BaseImage    BaseImage `yaml:"base_image"`
	HoldPackages Hold      `yaml:"hold_packages"`
	Network      Network   `yaml:"network"`
	// QEMU is set for boards that only exist as a QEMU machine.
	QEMU *QEMU `yaml:"qemu"`
}

// SoC names the system on chip.
type SoC struct {
	Vendor string `yaml:"vendor"`
	Model  string `yaml:"model"`
	// Family is the kernel's name for it, e.g. sun50i-a64.
	Family string `yaml:"family"`
}

// Disk is the layout the boot ROM and boot loader require.
type Disk struct {
	// PartitionTable is "mbr" or "gpt".
	PartitionTable string `yaml:"partition_table"`
	// RootPartitionStart is the byte offset of the root partition.
	RootPartitionStart int64 `yaml:"root_partition_start"`
}

// UBoot says where the boot loader comes from and where it goes.
type UBoot struct {
	// Package is the Debian package that ships the blobs, Dir the
	// directory they are in once it is unpacked.
	Package string `yaml:"package"`
	Dir     string `yaml:"dir"`
	Blobs   []Blob `yaml:"blobs"`
}

// Blob is one boot loader file written raw at Offset bytes into the disk.
type Blob struct {
	File   string `yaml:"file"`
	Offset int64  `yaml:"offset"`
}

// BaseImage is where the board's base image comes from when the user
// gives no --base-image.
type BaseImage struct {
	// Source is "armbian" or "debian" (built by scripts/, never downloaded).
	Source string `yaml:"source"`
	// URLPattern has {version} and {kernel} placeholders.
	URLPattern string `yaml:"url_pattern"`
	Version    string `yaml:"version"`
	Kernel     string `yaml:"kernel"`
	// SHA256 is the pinned digest of the file at the URL; empty means
	// nothing is pinned and nothing may be downloaded.
	SHA256 string `yaml:"sha256"`
}

// Hold lists the kernel and boot packages to apt-mark hold, per kind of
// base image: an unattended upgrade of them can leave a board unbootable.
type Hold struct {
	Armbian []string `yaml:"armbian"`
	Debian  []string `yaml:"debian"`
}

// Network describes the board's wired interface.
type Network struct {
	// Interfaces are the names (shell patterns) the LAN interface can
	// have, most likely first.
	Interfaces []string `yaml:"interfaces"`
	// EthDriver is the kernel driver of the LAN interface, as udev reports
	// it (ID_NET_DRIVER, from ethtool's driver field): systemd-networkd's
	// .link and .network files match on it, since the interface's name
	// differs between kernels.
	EthDriver string `yaml:"eth_driver"`
	// EthPath is udev's ID_PATH of the LAN interface, matched instead of
	// the driver when set: stmmac-based MACs report "st_gmac" or
	// "st_mac100" to ethtool whatever their platform driver, so the path
	// of the SoC's one MAC is the narrower match.
	EthPath string `yaml:"eth_path"`
}

// QEMU is how to boot a QEMU-only board.
type QEMU struct {
	// Args is a hint for qemu-system-<arch>: machine and CPU.
	Args []string `yaml:"args"`
	Bios *File    `yaml:"bios"`
}

// File is a file shipped by a Debian package on the build machine.
type File struct {
	Package string `yaml:"package"`
	File    string `yaml:"file"`
}

// ErrNoPinnedDigest is returned by BaseImageURL when the board pins no
// digest, so the builder has nothing to verify a download against.
var ErrNoPinnedDigest = errors.New("no pinned digest")

// Load returns the named board definition.
func Load(name string) (*Board, error) {
	names, err := Names()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == name {
			return load(n)
		}
	}
	return nil, fmt.Errorf("unknown board %q: known boards are %s", name, strings.Join(names, ", "))
}

// All returns every board definition, sorted by name.
func All() ([]*Board, error) {
	names, err := Names()
	if err != nil {
		return nil, err
	}
	all := make([]*Board, 0, len(names))
	for _, n := range names {
		b, err := load(n)
		if err != nil {
			return nil, err
		}
		all = append(all, b)
	}
	return all, nil
}

// Names returns the names of the known boards, sorted.
func Names() ([]string, error) {
	files, err := fs.Glob(definitions, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list board definitions: %w", err)
	}
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, strings.TrimSuffix(f, ".yaml"))
	}
	sort.Strings(names)
	return names, nil
}

func load(name string) (*Board, error) {
	file := name + ".yaml"
	data, err := definitions.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read board %s: %w", name, err)
	}
	return decode(file, data)
}

// decode parses a definition strictly: a misspelt key in a board file must
// fail the build, not silently drop a setting.
func decode(file string, data []byte) (*Board, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var b Board
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("board definition %s: %w", file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("board definition %s: more than one YAML document", file)
	}
	if want := strings.TrimSuffix(path.Base(file), ".yaml"); b.Name != want {
		return nil, fmt.Errorf("board definition %s: name %q, want %q (the file's name)", file, b.Name, want)
	}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("board definition %s: %w", file, err)
	}
	return &b, nil
}

// BaseImageURL returns the URL to download the board's base image from and
// the SHA-256 it must have. It refuses when no digest is pinned: an
// unverified download is never an option.
func (b *Board) BaseImageURL() (url, sha256 string, err error) {
	bi := b.BaseImage
	if bi.SHA256 == "" {
		what := "an Armbian Pine64so bookworm minimal .img or .img.xz"
		if bi.Source == "debian" {
			what = "a .img or .img.xz built with scripts/"
		}
		return "", "", fmt.Errorf("%w for board %s: pass --base-image FILE (%s)", ErrNoPinnedDigest, b.Name, what)
	}
	url = strings.NewReplacer("{version}", bi.Version, "{kernel}", bi.Kernel).Replace(bi.URLPattern)
	return url, bi.SHA256, nil
}

// MatchInterface reports whether name is one of the board's LAN
// interface names.
func (b *Board) MatchInterface(name string) bool {
	for _, pat := range b.Network.Interfaces {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}
