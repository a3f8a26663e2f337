package boards

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// mbrSize is the first sector, which holds the partition table: no boot
// loader blob may start inside it.
const mbrSize = 512

// validate checks a definition for mistakes that would otherwise surface
// as a board that does not boot.
func (b *Board) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if b.Arch != "arm64" {
		add("arch: %q, want arm64 (the only architecture the builder makes images for)", b.Arch)
	}
	if b.SoC.Family == "" {
		add("soc.family: empty")
	}
	if b.Console == "" {
		add("console: empty, want e.g. ttyS0,115200")
	}
	if strings.HasPrefix(b.DTB, "/") || strings.Contains(b.DTB, "..") {
		add("dtb: %q, want a path relative to the kernel's dtb directory", b.DTB)
	}
	switch b.Disk.PartitionTable {
	case "mbr", "gpt":
	default:
		add("disk.partition_table: %q, want mbr or gpt", b.Disk.PartitionTable)
	}
	start := b.Disk.RootPartitionStart
	if start <= 0 || start%(1<<20) != 0 {
		add("disk.root_partition_start: %d, want a positive multiple of 1 MiB", start)
	}
	if u := b.UBoot; u != nil {
		if u.Package == "" {
			add("uboot.package: empty")
		}
		if !path.IsAbs(u.Dir) {
			add("uboot.dir: %q, want an absolute directory", u.Dir)
		}
		if len(u.Blobs) == 0 {
			add("uboot.blobs: none")
		}
		for i, bl := range u.Blobs {
			if bl.File == "" || strings.Contains(bl.File, "/") {
				add("uboot.blobs[%d].file: %q, want a file name inside uboot.dir", i, bl.File)
			}
			if bl.Offset < mbrSize || bl.Offset%512 != 0 || bl.Offset >= start {
				add("uboot.blobs[%d].offset: %d, want a multiple of 512 after the MBR and before the root partition at %d", i, bl.Offset, start)
			}
			if i > 0 && bl.Offset <= u.Blobs[i-1].Offset {
				add("uboot.blobs[%d].offset: %d, want blobs in ascending offset order", i, bl.Offset)
			}
		}
		if b.Disk.PartitionTable == "gpt" && len(u.Blobs) > 0 && u.Blobs[0].Offset < 17*1024 {
			add("uboot.blobs[0].offset: %d overwrites the GPT: use partition_table mbr", u.Blobs[0].Offset)
		}
	}
	errs = append(errs, b.BaseImage.validate())
	if len(b.HoldPackages.Armbian)+len(b.HoldPackages.Debian) == 0 {
		add("hold_packages: none: list the kernel and boot loader packages")
	}
	switch d, p := b.Network.EthDriver, b.Network.EthPath; {
	case d == "" && p == "":
		add("network: no eth_driver or eth_path: give the LAN interface's driver as udev reports it (ID_NET_DRIVER, e.g. virtio_net) or its path (ID_PATH, e.g. platform-1c30000.ethernet)")
	case strings.ContainsAny(d, " \t\n*?["):
		add("network.eth_driver: %q, want the LAN interface's driver as udev reports it (ID_NET_DRIVER), e.g. virtio_net", d)
	case strings.ContainsAny(p, " \t\n*?["):
		add("network.eth_path: %q, want the LAN interface's udev ID_PATH, e.g. platform-1c30000.ethernet", p)
	}
	if len(b.Network.Interfaces) == 0 {
		add("network.interfaces: none")
	}
	for i, pat := range b.Network.Interfaces {
		if _, err := path.Match(pat, ""); err != nil || pat == "" {
			add("network.interfaces[%d]: %q is not a valid name pattern", i, pat)
		}
	}
	if q := b.QEMU; q != nil {
		if !slices.Contains(q.Args, "-M") && !slices.Contains(q.Args, "-machine") {
			add("qemu.args: %q names no machine (-M)", q.Args)
		}
		if q.Bios != nil && (q.Bios.Package == "" || !path.IsAbs(q.Bios.File)) {
			add("qemu.bios: want a package and an absolute file")
		}
	}
	return errors.Join(errs...)
}

func (bi BaseImage) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch bi.Source {
	case "armbian", "debian":
	default:
		add("base_image.source: %q, want armbian or debian", bi.Source)
	}
	if bi.URLPattern != "" && !strings.HasPrefix(bi.URLPattern, "https://") {
		add("base_image.url_pattern: %q, want an https:// URL", bi.URLPattern)
	}
	if bi.SHA256 == "" {
		return errors.Join(errs...)
	}
	if d, err := hex.DecodeString(bi.SHA256); err != nil || len(d) != 32 || strings.ToLower(bi.SHA256) != bi.SHA256 {
		add("base_image.sha256: %q, want 64 lower-case hex digits", bi.SHA256)
	}
	if bi.URLPattern == "" {
		add("base_image.sha256 is pinned but base_image.url_pattern is empty")
	}
	for _, p := range [][2]string{{"{version}", bi.Version}, {"{kernel}", bi.Kernel}} {
		if strings.Contains(bi.URLPattern, p[0]) && p[1] == "" {
			add("base_image.url_pattern has %s but it is empty: pin it with the digest", p[0])
		}
	}
	return errors.Join(errs...)
}
