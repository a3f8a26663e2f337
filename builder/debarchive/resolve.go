package debarchive

import (
	"context"
	"fmt"
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
//   - Dependencies of Priority required or important are skipped, and so
//     are their own dependencies: every Debian and Armbian base has them
//     (libc6, debconf, …). A package named explicitly is always included.
//   - Of alternatives (a | b) the first that the index has, as a package or
//     as a virtual package some package Provides, is taken.
//   - Version constraints are ignored: the index has one version per
//     package (the newest is kept), and within one suite it is the one the
//     others were built against.
//   - Recommends and Suggests are not followed.
func (a *Archive) Resolve(ctx context.Context, names []string) ([]Package, error) {
	idx, err := a.loadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return idx.resolve(names, a.where())
}

func (a *Archive) where() string {
	return fmt.Sprintf("%s %s %s/%s", a.BaseURL, a.Suite, a.Component, a.Arch)
}

func (idx *index) resolve(names []string, where string) ([]Package, error) {
	chosen := map[string]*Package{}
	var queue []*Package
	for _, name := range names {
		p := idx.lookup(name)
		if p == nil {
			return nil, fmt.Errorf("package %q is not in %s", name, where)
		}
		if chosen[p.Name] == nil {
			chosen[p.Name] = p
			queue = append(queue, p)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p.depends == "" {
			continue
		}
		deps, err := dependency.Parse(p.depends)
		if err != nil {
			return nil, fmt.Errorf("package %s: bad Depends %q: %w", p.Name, p.depends, err)
		}
		for _, rel := range deps.Relations {
			dep := idx.pick(rel)
			if dep == nil {
				return nil, fmt.Errorf("package %s depends on %s, which %s lacks", p.Name, relationString(rel), where)
			}
			if chosen[dep.Name] != nil || isBase(dep) {
				continue
			}
			chosen[dep.Name] = dep
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
		// "perl:any" names perl; the arch qualifier does not matter for
		// one-architecture installs.
		if p := idx.lookup(poss.Name); p != nil {
			return p
		}
	}
	return nil
}

func isBase(p *Package) bool {
	return p.Priority == "required" || p.Priority == "important"
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
			URL:    strings.TrimSuffix(a.BaseURL, "/") + "/" + p.Filename,
			SHA256: p.SHA256,
			Flag:   "--debs",
		})
		if err != nil {
			return nil, err
		}
		paths = append(paths, file)
	}
	return paths, nil
}
