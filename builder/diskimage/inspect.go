// Package diskimage handles whole base disk images: it reads their
// partition table, copies them sparsely, decompresses .img.xz bases and
// writes raw bootloader blobs ahead of the first partition.
//
// go-diskfs is used for the partition table only: its ext4 writer is not
// safe on real root file systems (see DESIGN.md §6); package
// builder/ext4fs writes the file system.
package diskimage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/part"
)

// Armbian names its root file system so.
const armbianRootLabel = "armbi_root"

const (
	sectorSize       = 512
	bootloaderStart  = 8 << 10  // sunxi SPL offset
	bootloaderLimit  = 1 << 20  // scanned for a bootloader up to here
	gptEntriesEnd    = 34 * 512 // primary GPT header + 128 entries
	ext4SuperOffset  = 1024
	ext4MagicOffset  = ext4SuperOffset + 56
	ext4LabelOffset  = ext4SuperOffset + 120
	ext4Magic        = 0xEF53
	hintImageSources = "give an Armbian .img(.xz) or one made by scripts/make-base-image"
)

var xzMagic = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}

// Layout describes where things are in a base image.
type Layout struct {
	Table      string // "mbr" or "gpt"
	RootIndex  int    // 1-based partition number of the root file system
	RootOffset int64  // byte offset of the root partition
	RootSize   int64  // size of the root partition in bytes
	RootLabel  string // ext4 volume label, "" if none
	// FirstPartitionOffset is the start of the lowest partition: raw
	// bootloader blobs must end before it.
	FirstPartitionOffset int64
	// HasBootloader reports non-zero bytes between 8 KiB and the first
	// partition (capped at 1 MiB), where sunxi u-boot lives.
	HasBootloader bool
}

// Inspect reads the partition table of the image at path and finds the
// ext4 root partition. When several partitions hold ext4, the one
// labelled armbi_root wins, else the largest.
func Inspect(path string) (Layout, error) {
	f, err := os.Open(path)
	if err != nil {
		return Layout{}, fmt.Errorf("base image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Layout{}, fmt.Errorf("base image %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return Layout{}, fmt.Errorf("base image %s is not a regular file: %s", path, hintImageSources)
	}
	head := make([]byte, len(xzMagic))
	if _, err := f.ReadAt(head, 0); err == nil && bytes.Equal(head, xzMagic) {
		return Layout{}, fmt.Errorf("base image %s is xz-compressed: decompress it first (CopyBase does)", path)
	}

	table, err := partition.Read(f, sectorSize, sectorSize)
	if err != nil {
		return Layout{}, fmt.Errorf("base image %s: no partition table (MBR or GPT) found: %s", path, hintImageSources)
	}
	l := Layout{Table: table.Type()}

	var parts []part.Partition
	for _, p := range table.GetPartitions() {
		if p.GetSize() <= 0 {
			continue // unused MBR slot or GPT entry
		}
		if end := p.GetStart() + p.GetSize(); end > st.Size() {
			return Layout{}, fmt.Errorf("base image %s: partition %d ends at byte %d but the image has %d bytes: the image is truncated, download it again",
				path, p.GetIndex(), end, st.Size())
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return Layout{}, fmt.Errorf("base image %s: the %s partition table has no partitions: %s", path, l.Table, hintImageSources)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].GetStart() < parts[j].GetStart() })
	l.FirstPartitionOffset = parts[0].GetStart()

	found := false
	for _, p := range parts {
		label, ok, err := ext4Label(f, p.GetStart())
		if err != nil {
			return Layout{}, fmt.Errorf("base image %s: partition %d: %w", path, p.GetIndex(), err)
		}
		if !ok {
			continue
		}
		if !found || betterRoot(label, p.GetSize(), l.RootLabel, l.RootSize) {
			found = true
			l.RootIndex, l.RootOffset, l.RootSize, l.RootLabel = p.GetIndex(), p.GetStart(), p.GetSize(), label
		}
	}
	if !found {
		return Layout{}, fmt.Errorf("base image %s: none of its %d %s partitions holds an ext4 file system: %s",
			path, len(parts), l.Table, hintImageSources)
	}

	l.HasBootloader, err = hasBootloader(f, l.Table, l.FirstPartitionOffset)
	if err != nil {
		return Layout{}, fmt.Errorf("base image %s: %w", path, err)
	}
	return l, nil
}

// betterRoot prefers Armbian's root label, then the larger partition.
func betterRoot(label string, size int64, curLabel string, curSize int64) bool {
	if isRoot, curIsRoot := label == armbianRootLabel, curLabel == armbianRootLabel; isRoot != curIsRoot {
		return isRoot
	}
	return size > curSize
}

// ext4Label reports whether an ext4 (or ext2/3) superblock is at off and
// returns its volume label.
func ext4Label(r io.ReaderAt, off int64) (string, bool, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, off+ext4SuperOffset); err != nil {
		if errors.Is(err, io.EOF) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("read superblock: %w", err)
	}
	magic := uint16(sb[ext4MagicOffset-ext4SuperOffset]) | uint16(sb[ext4MagicOffset-ext4SuperOffset+1])<<8
	if magic != ext4Magic {
		return "", false, nil
	}
	label := sb[ext4LabelOffset-ext4SuperOffset : ext4LabelOffset-ext4SuperOffset+16]
	if i := bytes.IndexByte(label, 0); i >= 0 {
		label = label[:i]
	}
	return string(label), true, nil
}

func hasBootloader(r io.ReaderAt, table string, firstPart int64) (bool, error) {
	start, end := int64(bootloaderStart), min(firstPart, bootloaderLimit)
	if table == "gpt" {
		start = max(start, gptEntriesEnd)
	}
	if end <= start {
		return false, nil
	}
	buf := make([]byte, end-start)
	if _, err := r.ReadAt(buf, start); err != nil {
		return false, fmt.Errorf("read bootloader area: %w", err)
	}
	for _, b := range buf {
		if b != 0 {
			return true, nil
		}
	}
	return false, nil
}
