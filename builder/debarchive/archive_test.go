package debarchive

import (
	"github.com/homecloud/homecloud/builder/debarchive/debtest"

	"bytes"
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/homecloud/homecloud/builder/fetch"
)

// wantClosure is keepalived's closure in the fake archive: not libc6
// (required), libgcc-fake (libc6 needs it), libfoo (the alternative after
// libc6), perl-base (required, provides perlapi) nor unrelated.
var wantClosure = []string{
	"fake-mta 4.96-15",              // provides mail-transport-agent
	"init-fake 1.65",                // Pre-Depends
	"keepalived 1:2.2.7-1+b2",       // asked for
	"libalt 2.0-1",                  // libmissing | libalt
	"libnl-3-200 3.7.0-0.2+b1",      // the newer of two versions
	"libnl-genl-3-200 3.7.0-0.2+b1", // direct dep
	"perl 5.36.0-7",                 // perl:any, Priority standard
}

func names(pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, p.Name+" "+p.Version)
	}
	return out
}

func TestResolveAndDownload(t *testing.T) {
	for _, compression := range [][]string{{".xz"}, {".gz"}, {".gz", ".xz"}} {
		t.Run(strings.Join(compression, ","), func(t *testing.T) {
			fa := newFakeArchive(t)
			fa.Compression = compression
			fa.Build(t)
			s := debtest.Serve(t, fa)
			a := newTestArchive(t, s, openpgp.EntityList{fa.Signer}, "")
			ctx := context.Background()

			pkgs, err := a.Resolve(ctx, []string{"keepalived"})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(pkgs); !slices.Equal(got, wantClosure) {
				t.Fatalf("closure:\n got %q\nwant %q", got, wantClosure)
			}
			// gzip is preferred when listed; the index comes by hash.
			wantIndex := compression[len(compression)-1]
			if slices.Contains(compression, ".gz") {
				wantIndex = ".gz"
			}
			idx := fa.Files["/dists/bookworm/main/binary-arm64/Packages"+wantIndex]
			if !s.Asked("/by-hash/SHA256/" + debtest.SHA256(idx)) {
				t.Errorf("Packages%s was not fetched by hash; requests: %q", wantIndex, s.Requests())
			}

			paths, err := a.Download(ctx, pkgs)
			if err != nil {
				t.Fatal(err)
			}
			if len(paths) != len(pkgs) {
				t.Fatalf("Download returned %d paths for %d packages", len(paths), len(pkgs))
			}
			for i, p := range pkgs {
				got, err := os.ReadFile(paths[i])
				if err != nil {
					t.Fatal(err)
				}
				if want := fa.Files["/"+p.Filename]; !bytes.Equal(got, want) {
					t.Errorf("%s: file %s holds %q, want %q", p.Name, paths[i], got, want)
				}
				if p.Size != int64(len(got)) {
					t.Errorf("%s: Size %d, file has %d bytes", p.Name, p.Size, len(got))
				}
			}
			if got := pkgs[2].DebName(); got != "keepalived_1%3a2.2.7-1+b2_arm64.deb" {
				t.Errorf("DebName = %q", got)
			}
		})
	}
}

func TestResolveRefusesBadRelease(t *testing.T) {
	tests := []struct {
		name    string
		change  func(t *testing.T, fa *debtest.Archive)
		suite   string
		wantErr string
	}{
		{"signed by another key", func(t *testing.T, fa *debtest.Archive) {
			fa.Signer = debtest.NewKey(t, "Mallory")
		}, "bookworm", "signature does not verify"},
		{"not signed", func(t *testing.T, fa *debtest.Archive) { fa.Unsigned = true }, "bookworm", "not an OpenPGP clearsigned"},
		{"another suite", nil, "trixie", `not "trixie"`},
		{"expired", func(t *testing.T, fa *debtest.Archive) {
			fa.ValidUntil = "Sat, 19 Oct 2024 09:08:34 UTC"
		}, "bookworm", "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := newFakeArchive(t)
			trusted := fa.Signer
			if tt.change != nil {
				tt.change(t, fa)
			}
			fa.Build(t)
			// A trixie request must still find the file: serve it there too.
			fa.Files["/dists/trixie/InRelease"] = fa.Files["/dists/bookworm/InRelease"]
			s := debtest.Serve(t, fa)
			a := newTestArchive(t, s, openpgp.EntityList{trusted}, "")
			a.Suite = tt.suite

			_, err := a.Resolve(context.Background(), []string{"keepalived"})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if slices.ContainsFunc(s.Requests(), func(p string) bool { return strings.Contains(p, "binary-arm64") }) {
				t.Errorf("fetched the index of an untrusted Release: %q", s.Requests())
			}
		})
	}
}

func TestResolveRefusesTamperedIndex(t *testing.T) {
	fa := newFakeArchive(t)
	fa.Build(t)
	for p, b := range fa.Files {
		if strings.Contains(p, "binary-arm64/") {
			fa.Files[p] = append(bytes.Clone(b), 0) // a byte appended
		}
	}
	s := debtest.Serve(t, fa)
	a := newTestArchive(t, s, openpgp.EntityList{fa.Signer}, "")
	_, err := a.Resolve(context.Background(), []string{"keepalived"})
	if !errors.Is(err, fetch.ErrDigestMismatch) || !strings.Contains(err.Error(), "Packages index") {
		t.Fatalf("err = %v, want a Packages index digest mismatch", err)
	}
}

func TestDownloadRefusesTamperedDeb(t *testing.T) {
	fa := newFakeArchive(t)
	fa.Build(t)
	s := debtest.Serve(t, fa)
	a := newTestArchive(t, s, openpgp.EntityList{fa.Signer}, "")
	ctx := context.Background()
	pkgs, err := a.Resolve(ctx, []string{"keepalived"})
	if err != nil {
		t.Fatal(err)
	}
	fa.Files["/"+pkgs[2].Filename] = []byte("trojan")
	_, err = a.Download(ctx, pkgs)
	if !errors.Is(err, fetch.ErrDigestMismatch) || !strings.Contains(err.Error(), "keepalived") {
		t.Fatalf("err = %v, want a digest mismatch naming keepalived", err)
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name    string
		pkgs    []debtest.Pkg
		ask     []string
		wantErr string
	}{
		{"unknown package", keepalivedPkgs(), []string{"keepalived", "nosuch"}, `package "nosuch" is not in`},
		{"unsatisfiable dependency", []debtest.Pkg{{Name: "a", Version: "1", Arch: "arm64", Depends: "gone | alsogone"}}, []string{"a"}, "a depends on gone | alsogone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fa := newFakeArchive(t)
			fa.Pkgs = tt.pkgs
			fa.Build(t)
			s := debtest.Serve(t, fa)
			a := newTestArchive(t, s, openpgp.EntityList{fa.Signer}, "")
			_, err := a.Resolve(context.Background(), tt.ask)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// An explicitly named base package is included; asking for a package
// twice, or a virtual one, gives it once.
func TestResolveExplicitNames(t *testing.T) {
	fa := newFakeArchive(t)
	fa.Build(t)
	s := debtest.Serve(t, fa)
	a := newTestArchive(t, s, openpgp.EntityList{fa.Signer}, "")
	pkgs, err := a.Resolve(context.Background(), []string{"libc6", "mail-transport-agent", "fake-mta"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"fake-mta 4.96-15", "libc6 2.36-9"}
	if got := names(pkgs); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestOffline(t *testing.T) {
	fa := newFakeArchive(t)
	fa.Build(t)
	s := debtest.Serve(t, fa)
	keyring := openpgp.EntityList{fa.Signer}
	ctx := context.Background()

	// Nothing cached yet: offline says how to get the .debs.
	cold := newTestArchive(t, s, keyring, "")
	cold.Cache.Offline = true
	if _, err := cold.Resolve(ctx, []string{"keepalived"}); !errors.Is(err, fetch.ErrNotCached) || !strings.Contains(err.Error(), "--debs") {
		t.Errorf("cold offline Resolve: err = %v, want ErrNotCached mentioning --debs", err)
	}

	online := newTestArchive(t, s, keyring, "")
	pkgs, err := online.Resolve(ctx, []string{"keepalived"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := online.Download(ctx, pkgs); err != nil {
		t.Fatal(err)
	}

	before := len(s.Requests())
	warm := newTestArchive(t, s, keyring, online.Cache.Dir)
	warm.Cache.Offline = true
	again, err := warm.Resolve(ctx, []string{"keepalived"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names(again), wantClosure) {
		t.Errorf("offline closure = %q", names(again))
	}
	if _, err := warm.Download(ctx, again); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Requests()) - before; n != 0 {
		t.Errorf("offline Resolve+Download made %d requests", n)
	}

	// The saved InRelease is re-verified: another keyring refuses it.
	other := newTestArchive(t, s, openpgp.EntityList{debtest.NewKey(t, "Other")}, online.Cache.Dir)
	other.Cache.Offline = true
	if _, err := other.Resolve(ctx, []string{"keepalived"}); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("offline with another keyring: err = %v", err)
	}
}

func TestCheckReleaseValidUntil(t *testing.T) {
	a := &Archive{Suite: "bookworm", Component: "main", Arch: "arm64"}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		validUntil string
		ok         bool
	}{
		{"", true},
		{"Thu, 26 Nov 2026 13:00:00 UTC", true},
		{"Thu, 26 Nov 2026 11:00:00 UTC", false},
		{"Thu, 26 Nov 2026 13:00:00 +0000", true},
		{"next week", false},
	}
	for _, tt := range tests {
		err := a.checkRelease(&release{Codename: "bookworm", ValidUntil: tt.validUntil, Architectures: "arm64", Components: "main"}, now)
		if (err == nil) != tt.ok {
			t.Errorf("Valid-Until %q: err = %v, want ok=%v", tt.validUntil, err, tt.ok)
		}
	}
	if err := a.checkRelease(&release{Codename: "bookworm", Architectures: "amd64 i386"}, now); err == nil || !strings.Contains(err.Error(), "no architecture arm64") {
		t.Errorf("missing Arch: err = %v", err)
	}
}

// The base set is conservative: an alternative a base package needs is not
// taken for granted unless the base itself settles it, since the real base
// may have installed the other one (bookworm's "usrmerge | usr-is-merged").
func TestResolveBaseAlternatives(t *testing.T) {
	idx := &index{pkgs: map[string]*Package{}, providers: map[string][]string{}}
	for _, e := range []indexEntry{
		{Package: "init-system-helpers", Priority: "required", Depends: "usrmerge | usr-is-merged, perl-base"},
		{Package: "perl-base", Essential: "yes", Priority: "optional", Provides: "perlapi-5.36.0"},
		{Package: "dpkg", Priority: "required", Depends: "tar | gtar"},
		{Package: "tar", Priority: "required"},
		{Package: "usrmerge", Priority: "optional", Depends: "perl"},
		{Package: "usr-is-merged", Priority: "optional"},
		{Package: "perl", Priority: "standard", Depends: "perl-base"},
		{Package: "gtar", Priority: "optional"},
		{Package: "app", Priority: "optional", Depends: "perl, usr-is-merged, gtar | tar, perlapi-5.36.0"},
	} {
		e.Version, e.Filename, e.Size, e.SHA256 = "1", "pool/"+e.Package+".deb", "1", strings.Repeat("a", 64)
		if err := idx.add(e); err != nil {
			t.Fatal(err)
		}
	}
	pkgs, err := idx.resolve([]string{"app"}, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"app 1", "perl 1", "usr-is-merged 1"}
	if got := names(pkgs); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	// A minimal base (mmdebstrap's minbase) may lack what the priorities
	// promise: resolved against its dpkg status, what it lacks (here
	// perl-base, the Essential provider of perlapi) comes along.
	status := "Package: tar\nStatus: install ok installed\nProvides: gtar (= 1)\n\n" +
		"Package: perl\nStatus: deinstall ok config-files\n"
	installed := ParseStatus([]byte(status))
	if !installed["tar"] || !installed["gtar"] || installed["perl"] {
		t.Fatalf("ParseStatus = %v", installed)
	}
	pkgs, err = idx.resolve([]string{"app"}, "test", installed)
	if err != nil {
		t.Fatal(err)
	}
	want = []string{"app 1", "perl 1", "perl-base 1", "usr-is-merged 1"}
	if got := names(pkgs); !slices.Equal(got, want) {
		t.Errorf("against the base's status: got %q, want %q", got, want)
	}
}
