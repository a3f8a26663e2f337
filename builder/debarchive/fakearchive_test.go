package debarchive

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ulikunitz/xz"

	"github.com/homecloud/homecloud/builder/fetch"
)

// fakePkg is one package of the fake archive; its .deb is just bytes.
type fakePkg struct {
	name, version, arch, priority, depends, preDepends, provides string
}

// fakeArchive builds a tiny signed archive in memory:
// dists/<suite>/InRelease → main/binary-arm64/Packages.{xz,gz} → pool/*.deb.
type fakeArchive struct {
	pkgs        []fakePkg
	codename    string
	validUntil  string
	compression []string // which Packages files Release lists: ".xz", ".gz"
	signer      *openpgp.Entity
	unsigned    bool

	files map[string][]byte // URL path → content
}

func newTestKey(t *testing.T, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "test only", "archive@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// keepalivedPkgs is a small world shaped like Debian's: keepalived with
// versioned deps, alternatives, a virtual package, a Pre-Depends, and deps
// that the base system already has.
func keepalivedPkgs() []fakePkg {
	return []fakePkg{
		{name: "keepalived", version: "1:2.2.7-1+b2", arch: "arm64", priority: "optional",
			preDepends: "init-fake",
			depends:    "libnl-3-200 (>= 3.2.27), libc6 (>= 2.34) | libfoo, libnl-genl-3-200, libmissing | libalt, mail-transport-agent, libgcc-fake, perl:any, perlapi-5.36.0"},
		{name: "libnl-3-200", version: "3.5.0-1", arch: "arm64", priority: "optional"},
		{name: "libnl-3-200", version: "3.7.0-0.2+b1", arch: "arm64", priority: "optional", depends: "libc6 (>= 2.17)"},
		{name: "libnl-genl-3-200", version: "3.7.0-0.2+b1", arch: "arm64", priority: "optional", depends: "libnl-3-200 (= 3.7.0-0.2+b1)"},
		{name: "libc6", version: "2.36-9", arch: "arm64", priority: "required", depends: "libgcc-fake"},
		{name: "libgcc-fake", version: "12.2.0-14", arch: "arm64", priority: "optional"},
		{name: "libfoo", version: "1.0-1", arch: "arm64", priority: "optional"},
		{name: "libalt", version: "2.0-1", arch: "all", priority: "optional"},
		{name: "fake-mta", version: "4.96-15", arch: "arm64", priority: "optional", provides: "mail-transport-agent"},
		{name: "init-fake", version: "1.65", arch: "arm64", priority: "optional"},
		{name: "perl", version: "5.36.0-7", arch: "arm64", priority: "standard"},
		{name: "perl-base", version: "5.36.0-7", arch: "arm64", priority: "required", provides: "perlapi-5.36.0"},
		{name: "unrelated", version: "1.0", arch: "arm64", priority: "optional", depends: "libfoo"},
	}
}

func newFakeArchive(t *testing.T) *fakeArchive {
	return &fakeArchive{
		pkgs:        keepalivedPkgs(),
		codename:    "bookworm",
		compression: []string{".xz", ".gz"},
		signer:      newTestKey(t, "Fake Archive Signing Key"),
	}
}

func debContent(p fakePkg) []byte {
	return []byte(fmt.Sprintf("fake deb %s %s %s\n", p.name, p.version, p.arch))
}

func (p fakePkg) filename() string {
	// The pool path is what the index says, so it need not look like Debian's.
	return fmt.Sprintf("pool/main/%s_%s_%s.deb", p.name, strings.ReplaceAll(p.version, ":", "%3a"), p.arch)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// build renders every file; tests tamper with a.files afterwards.
func (a *fakeArchive) build(t *testing.T) {
	t.Helper()
	a.files = map[string][]byte{}
	var idx bytes.Buffer
	for _, p := range a.pkgs {
		deb := debContent(p)
		a.files["/"+p.filename()] = deb
		fmt.Fprintf(&idx, "Package: %s\nVersion: %s\nArchitecture: %s\nPriority: %s\n", p.name, p.version, p.arch, p.priority)
		for k, v := range map[string]string{"Pre-Depends": p.preDepends, "Depends": p.depends, "Provides": p.provides} {
			if v != "" {
				fmt.Fprintf(&idx, "%s: %s\n", k, v)
			}
		}
		fmt.Fprintf(&idx, "Description: fake %s\n a long description\n .\n over lines\nFilename: %s\nSize: %d\nSHA256: %s\n\n",
			p.name, p.filename(), len(deb), sha(deb))
	}

	var rel bytes.Buffer
	fmt.Fprintf(&rel, "Origin: Debian\nSuite: stable\nCodename: %s\nDate: Sat, 12 Oct 2024 09:08:34 UTC\n", a.codename)
	if a.validUntil != "" {
		fmt.Fprintf(&rel, "Valid-Until: %s\n", a.validUntil)
	}
	rel.WriteString("Acquire-By-Hash: yes\nArchitectures: amd64 arm64\nComponents: main contrib\nSHA256:\n")
	for _, ext := range a.compression {
		b := compress(t, ext, idx.Bytes())
		name := "main/binary-arm64/Packages" + ext
		a.files["/dists/bookworm/"+name] = b
		a.files["/dists/bookworm/main/binary-arm64/by-hash/SHA256/"+sha(b)] = b
		fmt.Fprintf(&rel, " %s %d %s\n", sha(b), len(b), name)
	}

	if a.unsigned {
		a.files["/dists/bookworm/InRelease"] = rel.Bytes()
		return
	}
	var signed bytes.Buffer
	w, err := clearsign.Encode(&signed, a.signer.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(rel.Bytes())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a.files["/dists/bookworm/InRelease"] = signed.Bytes()
}

func compress(t *testing.T, ext string, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	switch ext {
	case ".xz":
		w, err := xz.NewWriter(&out)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	case ".gz":
		w := gzip.NewWriter(&out)
		w.Write(b)
		w.Close()
	}
	return out.Bytes()
}

// archiveServer serves the fake archive over HTTPS on 127.0.0.1 and
// records the paths asked for.
type archiveServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func serveArchive(t *testing.T, a *fakeArchive) *archiveServer {
	t.Helper()
	s := &archiveServer{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.URL.Path)
		s.mu.Unlock()
		p := strings.TrimPrefix(r.URL.Path, "/debian")
		b, ok := a.files[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *archiveServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func (s *archiveServer) asked(suffix string) bool {
	for _, p := range s.requests() {
		if strings.HasSuffix(p, suffix) {
			return true
		}
	}
	return false
}

// newTestArchive returns an Archive on the fake server, trusting keyring.
func newTestArchive(t *testing.T, s *archiveServer, keyring openpgp.EntityList, cacheDir string) *Archive {
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
