package debarchive

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"pault.ag/go/debian/dependency"

	"github.com/homecloud/homecloud/builder/fetch"
)

// Resolve returns the named packages and the closure of their Depends and
// Pre-Depends, sorted by name, as the archive's newest versions.
//
// It is deliberately smaller than apt, because the result is installed
// with dpkg onto a known Debian/Armbian base, not onto an empty system:
//
//   - Dependencies that belong to the base system are skipped: packages of
//     Priority required or important or marked Essential, and everything
//     they depend on. Every Debian and Armbian base has them. The closure
//     matters: since bookworm, libraries such as libc6, libssl3 and zlib1g
//     are Priority optional and are in every base only because required
//     packages depend on them. A package named explicitly is always
//     included.
//   - Of alternatives (a | b) none is added when one is already in the base
//     or the result; otherwise the first that the index has, as a package
//     or as a virtual package some package Provides, is taken.
//   - Version constraints are ignored: the index has one version per
//     package (the newest is kept), and within one suite it is the one the
//     others were built against.
//   - Recommends and Suggests are not followed.
func (a *Archive) Resolve(ctx context.Context, names []string) ([]Package, error) {
	idx, err := a.loadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return idx.resolve(names, a.where(), a.Installed)
}

// baseSet is what every Debian system with the packages of Priority
// required or important (or marked Essential) installed must have. It is
// conservative: where a dependency has alternatives and none is in the set
// yet, no alternative is added, because the base may have either and a
// package wrongly taken for granted would break the install.
func (idx *index) baseSet() (map[string]bool, error) {
	base := map[string]bool{}
	for _, p := range idx.pkgs {
		if p.Priority == "required" || p.Priority == "important" || p.essential {
			base[p.Name] = true
		}
	}
	// Repeat until nothing changes: a later addition can settle an
	// alternative an earlier pass left open.
	for changed := true; changed; {
		changed = false
		for name := range base {
			deps, err := idx.deps(idx.pkgs[name])
			if err != nil {
				return nil, err
			}
			for _, rel := range deps {
				if idx.satisfied(rel, base) || len(rel.Possibilities) != 1 {
					continue
				}
				if dep := idx.sole(rel.Possibilities[0].Name); dep != nil && !base[dep.Name] {
					base[dep.Name] = true
					changed = true
				}
			}
		}
	}
	return base, nil
}

// deps parses Pre-Depends and Depends.
func (idx *index) deps(p *Package) ([]dependency.Relation, error) {
	if p == nil || p.depends == "" {
		return nil, nil
	}
	d, err := dependency.Parse(p.depends)
	if err != nil {
		return nil, fmt.Errorf("package %s: bad Depends %q: %w", p.Name, p.depends, err)
	}
	return d.Relations, nil
}

// satisfied reports whether a package of set meets one of rel's
// alternatives, itself or as a provider. ("perl:any" names perl: the arch
// qualifier does not matter for one-architecture installs.)
func (idx *index) satisfied(rel dependency.Relation, set map[string]bool) bool {
	for _, poss := range rel.Possibilities {
		if set[poss.Name] {
			return true
		}
		for _, prov := range idx.providers[poss.Name] {
			if set[prov] {
				return true
			}
		}
	}
	return false
}

// sole is the package a name must mean: the real package, or the only
// provider of a virtual one.
func (idx *index) sole(name string) *Package {
	if p := idx.pkgs[name]; p != nil {
		return p
	}
	if provs := idx.providers[name]; len(provs) == 1 {
		return idx.pkgs[provs[0]]
	}
	return nil
}

func (idx *index) resolve(names []string, where string, installed map[string]bool) ([]Package, error) {
	base := installed
	if base == nil {
		var err error
		if base, err = idx.baseSet(); err != nil {
			return nil, err
		}
	}
	chosen := map[string]*Package{}
	inChosen := map[string]bool{}
	var queue []*Package
	for _, name := range names {
		p := idx.lookup(name)
		if p == nil {
			return nil, fmt.Errorf("package %q is not in %s", name, where)
		}
		if chosen[p.Name] == nil {
			chosen[p.Name] = p
			inChosen[p.Name] = true
			queue = append(queue, p)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		deps, err := idx.deps(p)
		if err != nil {
			return nil, err
		}
		for _, rel := range deps {
			if idx.satisfied(rel, base) || idx.satisfied(rel, inChosen) {
				continue
			}
			dep := idx.pick(rel)
			if dep == nil {
				return nil, fmt.Errorf("package %s depends on %s, which %s lacks", p.Name, relationString(rel), where)
			}
			if chosen[dep.Name] != nil || base[dep.Name] {
				continue
			}
			chosen[dep.Name] = dep
			inChosen[dep.Name] = true
			queue = append(queue, dep)
		}
	}
	out := make([]Package, 0, len(chosen))
	for _, p := range chosen {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// lookup finds a real package by name, else the first provider of a
// virtual one.
func (idx *index) lookup(name string) *Package {
	if p := idx.pkgs[name]; p != nil {
		return p
	}
	for _, prov := range idx.providers[name] {
		if p := idx.pkgs[prov]; p != nil {
			return p
		}
	}
	return nil
}

func (idx *index) pick(rel dependency.Relation) *Package {
	for _, poss := range rel.Possibilities {
		if p := idx.lookup(poss.Name); p != nil {
			return p
		}
	}
	return nil
}

func relationString(rel dependency.Relation) string {
	var names []string
	for _, p := range rel.Possibilities {
		names = append(names, p.Name)
	}
	return strings.Join(names, " | ")
}

// Download fetches each package into the cache and returns the .deb paths,
// in the order of pkgs. Each file is checked against the SHA-256 of the
// signed Packages index before its path is returned.
func (a *Archive) Download(ctx context.Context, pkgs []Package) ([]string, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	paths := make([]string, 0, len(pkgs))
	for _, p := range pkgs {
		file, err := a.Cache.GetInput(ctx, fetch.Input{
			Name:   fmt.Sprintf("%s %s (%s)", p.Name, p.Version, p.Architecture),
			URL:    strings.TrimSuffix(a.BaseURL, "/") + "/" + escapePath(p.Filename),
			SHA256: p.SHA256,
			Flag:   "--debs DIR",
		})
		if err != nil {
			return nil, err
		}
		paths = append(paths, file)
	}
	return paths, nil
}

func (a *Archive) where() string {
	return fmt.Sprintf("%s %s %s/%s", a.BaseURL, a.Suite, a.Component, a.Arch)
}

// escapePath makes an archive path safe in a URL: a file name may hold a
// literal "%" (an epoch written "%3a") that a server would otherwise decode.
func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
