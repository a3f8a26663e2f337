package debarchive

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"pault.ag/go/debian/deb"
)

// nodeArch is the only architecture homecloud's nodes run (the PINE A64-LTS
// and the qemu-virt test board are both arm64).
const nodeArch = "arm64"

// LocalDeb is a .deb supplied by the user (--debs DIR).
type LocalDeb struct {
	Path         string
	Name         string
	Version      string
	Architecture string
}

// LocalDebs lists the *.deb files in dir, sorted by name, after checking
// that each is a Debian binary package for arm64 or all.
func LocalDebs(dir string) ([]LocalDeb, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.deb"))
	if err != nil {
		return nil, fmt.Errorf("list .debs in %s: %w", dir, err)
	}
	if len(paths) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("--debs %s: %w", dir, err)
		}
		return nil, fmt.Errorf("--debs %s: no .deb files there", dir)
	}
	slices.Sort(paths)
	var out []LocalDeb
	var errs []error
	for _, p := range paths {
		d, err := readDeb(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, d)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func readDeb(path string) (LocalDeb, error) {
	d, closer, err := deb.LoadFile(path)
	if err != nil {
		return LocalDeb{}, fmt.Errorf("%s is not a Debian binary package (ar archive with debian-binary, control.tar.* and data.tar.*): %w", path, err)
	}
	defer closer()
	arch := d.Control.Architecture.String()
	if arch != nodeArch && arch != "all" {
		return LocalDeb{}, fmt.Errorf("%s is package %s for architecture %s: homecloud nodes need %s or all", path, d.Control.Package, arch, nodeArch)
	}
	return LocalDeb{Path: path, Name: d.Control.Package, Version: d.Control.Version.String(), Architecture: arch}, nil
}
