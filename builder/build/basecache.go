package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/homecloud/homecloud/internal/cluster"
)

// baseRecord is the sidecar <xz-digest>.img.json of a base decompressed
// into the cache. It is written only once the image is complete, fsynced
// and renamed, so an image without one (power loss, disk full, a killed
// build) is never reused.
type baseRecord struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // holes hashed as zeros (hashImage)
	// ModTimeNS is the image's mtime when the record was written.
	ModTimeNS int64 `json:"mtime_ns"`
}

func baseRecordPath(raw string) string { return raw + ".json" }

// errNoCachedBase: nothing was decompressed yet, which is not worth a warning.
var errNoCachedBase = errors.New("not decompressed yet")

// checkCachedBase returns nil if the decompressed base at raw can be
// reused, or why not.
//
// A reuse does not re-hash the image (~1.3 s per 2 GiB, on every build):
// the failures this guards against (power loss, disk full) leave no
// record or a short file, which the size check sees. An image written in
// place since the record (a stray dd, a bad copy back) has another mtime:
// only then is it re-hashed against the record, which a plain touch or
// cp passes after that one hash.
func checkCachedBase(ctx context.Context, raw string) error {
	st, err := os.Stat(raw)
	if errors.Is(err, os.ErrNotExist) {
		return errNoCachedBase
	} else if err != nil {
		return fmt.Errorf("stat cached base %s: %w", raw, err)
	}
	b, err := os.ReadFile(baseRecordPath(raw))
	if err != nil {
		return fmt.Errorf("no record that its decompression finished: %w", err)
	}
	var rec baseRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("record %s: %w", baseRecordPath(raw), err)
	}
	if st.Size() != rec.Size {
		return fmt.Errorf("%d bytes, %d when decompressed", st.Size(), rec.Size)
	}
	if st.ModTime().UnixNano() == rec.ModTimeNS {
		return nil
	}
	sum, err := hashImage(ctx, raw)
	if err != nil {
		return fmt.Errorf("hash cached base %s: %w", raw, err)
	}
	if sum != rec.SHA256 {
		return fmt.Errorf("changed since it was decompressed: sha256 %s, was %s", sum, rec.SHA256)
	}
	return recordBase(raw, sum)
}

// recordBase writes raw's sidecar; sum is raw's hashImage digest.
func recordBase(raw, sum string) error {
	st, err := os.Stat(raw)
	if err != nil {
		return fmt.Errorf("record cached base: %w", err)
	}
	b, err := json.Marshal(baseRecord{Size: st.Size(), SHA256: sum, ModTimeNS: st.ModTime().UnixNano()})
	if err != nil {
		return fmt.Errorf("record cached base %s: %w", raw, err)
	}
	return cluster.WriteFileAtomic(baseRecordPath(raw), b, 0o644)
}
