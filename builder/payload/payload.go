// Package payload carries the node service binary the builder writes into
// every image. It is embedded at build time (make payload), so a
// homecloud-builder binary needs no Go toolchain when it runs.
package payload

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
)

// FirstbootName is the file make payload writes next to this source.
const FirstbootName = "homecloud-firstboot"

// The whole directory, so the pattern matches even before make payload
// ran (README.md is always there).
//
//go:embed *
var dir embed.FS

// ErrMissing says the builder was compiled without the node service.
var ErrMissing = errors.New("this homecloud-builder was built without the node service: run make build")

// Firstboot returns the linux/arm64 homecloud-firstboot binary.
func Firstboot() ([]byte, error) {
	b, err := dir.ReadFile(FirstbootName)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(b) == 0) {
		return nil, ErrMissing
	}
	if err != nil {
		return nil, fmt.Errorf("read embedded %s: %w", FirstbootName, err)
	}
	return b, nil
}
