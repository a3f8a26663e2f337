// Package debarchive fetches binary packages (.debs) from a Debian archive,
// trusting only what a signed chain vouches for: the InRelease signature
// (checked against a keyring) covers the Packages index's SHA-256, and the
// index covers each .deb's SHA-256.
package debarchive

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/xi2/xz"
	"pault.ag/go/debian/control"
	"pault.ag/go/debian/version"

	"github.com/homecloud/homecloud/builder/fetch"
)

// Archive is one suite, component and architecture of a Debian archive.
type Archive struct {
	BaseURL   string // "http://deb.debian.org/debian": plain HTTP is fine, the signatures carry the trust
	Suite     string // "bookworm"
	Component string // "main"
	Arch      string // "arm64"
	Keyring   openpgp.EntityList
	Cache     *fetch.Cache
	Logger    *slog.Logger // nil means slog.Default()
	// Installed, when set, is what the base image has (ParseStatus of its
	// dpkg status): Resolve skips exactly those. When nil, Resolve assumes
	// a base with every package of Priority required or important.
	Installed map[string]bool
}

// Package is one binary package as the Packages index describes it.
type Package struct {
	Name         string
	Version      string
	Architecture string // Arch, or "all"
	Priority     string
	Filename     string // path in the archive, relative to BaseURL
	Size         int64
	SHA256       string

	depends   string // Pre-Depends and Depends, joined
	essential bool
}

// DebName is the .deb's file name ("keepalived_1%3a2.2.7-1+b2_arm64.deb").
func (p Package) DebName() string { return path.Base(p.Filename) }

// index is the parsed Packages file: the newest version of each package,
// and who provides each virtual package.
type index struct {
	pkgs      map[string]*Package
	providers map[string][]string
}

func (a *Archive) distURL(rel string) string {
	return strings.TrimSuffix(a.BaseURL, "/") + "/dists/" + a.Suite + "/" + rel
}

func (a *Archive) check() error {
	switch {
	case a.BaseURL == "" || a.Suite == "" || a.Component == "" || a.Arch == "":
		return errors.New("debian archive: BaseURL, Suite, Component and Arch must all be set")
	case a.Cache == nil:
		return errors.New("debian archive: no download cache set")
	}
	return nil
}

func (a *Archive) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}

// loadIndex verifies InRelease, fetches the Packages index it vouches for
// and parses it.
func (a *Archive) loadIndex(ctx context.Context) (*index, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	rel, err := a.release(ctx)
	if err != nil {
		return nil, err
	}
	name, sum, err := a.indexFile(rel)
	if err != nil {
		return nil, err
	}
	url := a.distURL(escapePath(name))
	if rel.AcquireByHash == "yes" {
		// by-hash names never change content, so a mirror update between
		// InRelease and this request cannot hand us a newer index.
		url = a.distURL(path.Dir(name) + "/by-hash/SHA256/" + sum)
	}
	file, err := a.Cache.GetInput(ctx, fetch.Input{
		Name: fmt.Sprintf("Packages index of %s %s/%s", a.Suite, a.Component, a.Arch), URL: url, SHA256: sum, Flag: "--debs DIR",
	})
	if err != nil {
		return nil, err
	}
	return parseIndex(file, path.Ext(name))
}

// indexEntry holds the fields of a Packages paragraph this package uses.
type indexEntry struct {
	Package, Version, Architecture, Priority, Filename, SHA256 string
	Size                                                       string
	Depends                                                    string
	PreDepends                                                 string `control:"Pre-Depends"`
	Provides                                                   string
	Essential                                                  string
}

func parseIndex(file, ext string) (*index, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader
	switch ext {
	case ".xz":
		if r, err = xz.NewReader(f, 0); err != nil {
			return nil, fmt.Errorf("Packages index: %w", err)
		}
	case ".gz":
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("Packages index: %w", err)
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("Packages index: unknown compression %q", ext)
	}
	dec, err := control.NewDecoder(r, nil)
	if err != nil {
		return nil, fmt.Errorf("Packages index: %w", err)
	}
	idx := &index{pkgs: map[string]*Package{}, providers: map[string][]string{}}
	for {
		var e indexEntry
		if err := dec.Decode(&e); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("parse Packages index: %w", err)
		}
		if err := idx.add(e); err != nil {
			return nil, fmt.Errorf("Packages index: %w", err)
		}
	}
	return idx, nil
}

func (idx *index) add(e indexEntry) error {
	size, err := strconv.ParseInt(e.Size, 10, 64)
	if err != nil || e.Package == "" || e.Filename == "" || len(e.SHA256) != 64 {
		return fmt.Errorf("entry %q lacks a Filename, Size or SHA256", e.Package)
	}
	p := &Package{
		Name: e.Package, Version: e.Version, Architecture: e.Architecture, Priority: e.Priority,
		Filename: e.Filename, Size: size, SHA256: strings.ToLower(e.SHA256),
		depends: joinDeps(e.PreDepends, e.Depends), essential: e.Essential == "yes",
	}
	if old, ok := idx.pkgs[p.Name]; ok && newer(old.Version, p.Version) {
		return nil
	}
	idx.pkgs[p.Name] = p
	for _, prov := range strings.Split(e.Provides, ",") {
		// "Provides: foo (= 1.0)": the name is what counts here.
		if name, _, _ := strings.Cut(strings.TrimSpace(prov), " "); name != "" {
			idx.providers[name] = append(idx.providers[name], p.Name)
		}
	}
	return nil
}

// newer reports whether version a sorts after b (dpkg ordering).
func newer(a, b string) bool {
	va, errA := version.Parse(a)
	vb, errB := version.Parse(b)
	if errA != nil || errB != nil {
		return a > b
	}
	return version.Compare(va, vb) > 0
}

func joinDeps(parts ...string) string {
	var nonEmpty []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			nonEmpty = append(nonEmpty, p)
		}
	}
	return strings.Join(nonEmpty, ", ")
}
