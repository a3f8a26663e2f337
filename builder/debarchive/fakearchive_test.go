package debarchive

import (
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/homecloud/homecloud/builder/debarchive/debtest"
	"github.com/homecloud/homecloud/builder/fetch"
)

// keepalivedPkgs is a small world shaped like Debian's: keepalived with
// versioned deps, alternatives, a virtual package, a Pre-Depends, and deps
// that the base system already has.
func keepalivedPkgs() []debtest.Pkg {
	return []debtest.Pkg{
		{Name: "keepalived", Version: "1:2.2.7-1+b2", Arch: "arm64", Priority: "optional",
			PreDepends: "init-fake",
			Depends:    "libnl-3-200 (>= 3.2.27), libc6 (>= 2.34) | libfoo, libnl-genl-3-200, libmissing | libalt, mail-transport-agent, libgcc-fake, perl:any, perlapi-5.36.0"},
		{Name: "libnl-3-200", Version: "3.5.0-1", Arch: "arm64", Priority: "optional"},
		{Name: "libnl-3-200", Version: "3.7.0-0.2+b1", Arch: "arm64", Priority: "optional", Depends: "libc6 (>= 2.17)"},
		{Name: "libnl-genl-3-200", Version: "3.7.0-0.2+b1", Arch: "arm64", Priority: "optional", Depends: "libnl-3-200 (= 3.7.0-0.2+b1)"},
		{Name: "libc6", Version: "2.36-9", Arch: "arm64", Priority: "required", Depends: "libgcc-fake"},
		{Name: "libgcc-fake", Version: "12.2.0-14", Arch: "arm64", Priority: "optional"},
		{Name: "libfoo", Version: "1.0-1", Arch: "arm64", Priority: "optional"},
		{Name: "libalt", Version: "2.0-1", Arch: "all", Priority: "optional"},
		{Name: "fake-mta", Version: "4.96-15", Arch: "arm64", Priority: "optional", Provides: "mail-transport-agent"},
		{Name: "init-fake", Version: "1.65", Arch: "arm64", Priority: "optional"},
		{Name: "perl", Version: "5.36.0-7", Arch: "arm64", Priority: "standard"},
		{Name: "perl-base", Version: "5.36.0-7", Arch: "arm64", Priority: "required", Provides: "perlapi-5.36.0"},
		{Name: "unrelated", Version: "1.0", Arch: "arm64", Priority: "optional", Depends: "libfoo"},
	}
}

func newFakeArchive(t *testing.T) *debtest.Archive {
	return &debtest.Archive{
		Pkgs:        keepalivedPkgs(),
		Codename:    "bookworm",
		Compression: []string{".xz", ".gz"},
		Signer:      debtest.NewKey(t, "Fake Archive Signing Key"),
	}
}

// newTestArchive returns an Archive on the fake server, trusting keyring.
func newTestArchive(t *testing.T, s *debtest.Server, keyring openpgp.EntityList, cacheDir string) *Archive {
	t.Helper()
	if cacheDir == "" {
		cacheDir = t.TempDir()
	}
	c, err := fetch.NewCache(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	c.Client = s.Client()
	c.Attempts = 1
	return &Archive{BaseURL: s.URL + "/debian", Suite: "bookworm", Component: "main", Arch: "arm64", Keyring: keyring, Cache: c}
}
