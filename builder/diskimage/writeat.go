package diskimage

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/diskfs/go-diskfs/partition"
)

// WriteAt writes the raw blob r (a bootloader such as sunxi's SPL or
// u-boot FIT) into the image at path at byte offset off, and fsyncs. It
// refuses, writing nothing, if the blob would overlap the partition
// table or reach into the first partition.
func WriteAt(path string, off int64, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("write bootloader: %w", err)
	}
	defer f.Close()
	table, err := partition.Read(f, sectorSize, sectorSize)
	if err != nil {
		return fmt.Errorf("write bootloader into %s: no partition table (MBR or GPT) found: %s", path, hintImageSources)
	}
	tableEnd := int64(sectorSize)
	if table.Type() == "gpt" {
		tableEnd = gptEntriesEnd
	}
	limit := int64(-1)
	for _, p := range table.GetPartitions() {
		if p.GetSize() > 0 && (limit < 0 || p.GetStart() < limit) {
			limit = p.GetStart()
		}
	}
	if limit < 0 {
		return fmt.Errorf("write bootloader into %s: the partition table has no partitions: %s", path, hintImageSources)
	}
	if off < tableEnd || off >= limit {
		return fmt.Errorf("write bootloader into %s at byte %d: outside the free area [%d, %d) between the %s partition table and the first partition: check the board's bootloader offset",
			path, off, tableEnd, limit, table.Type())
	}
	// The area before a partition is at most a few MiB: buffer the blob so
	// that an oversized one writes nothing at all.
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, limit-off+1)); err != nil {
		return fmt.Errorf("write bootloader into %s: read blob: %w", path, err)
	}
	if end := off + int64(buf.Len()); end > limit {
		return fmt.Errorf("write bootloader into %s at byte %d: the blob reaches past byte %d, where the first partition starts: the blob is too large or the offset wrong for this image",
			path, off, limit)
	}
	if _, err := f.WriteAt(buf.Bytes(), off); err != nil {
		return fmt.Errorf("write bootloader into %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write bootloader into %s: %w", path, err)
	}
	return f.Close()
}
