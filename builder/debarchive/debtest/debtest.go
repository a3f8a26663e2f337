// Package debtest serves a tiny signed Debian archive over HTTPS on
// 127.0.0.1 for tests: dists/<suite>/InRelease, Packages.{xz,gz} and
// fake .debs, so the archive code and the builder can be tested against
// the whole Release → Packages → SHA-256 chain without Debian.
package debtest

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
)

// Pkg is one package of the fake archive; its .deb is just bytes.
type Pkg struct {
	Name, Version, Arch, Priority, Depends, PreDepends, Provides string
}

// Archive builds a tiny signed archive in memory:
// dists/<suite>/InRelease → main/binary-arm64/Packages.{xz,gz} → pool/*.deb.
type Archive struct {
	Pkgs        []Pkg
	Codename    string
	ValidUntil  string
	Compression []string // which Packages files Release lists: ".xz", ".gz"
	Signer      *openpgp.Entity
	Unsigned    bool

	Files map[string][]byte // URL path → content
}

// NewKey makes an archive signing key for a test.
func NewKey(t testing.TB, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "test only", "archive@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// DebContent is the bytes served as p's .deb.
func DebContent(p Pkg) []byte {
	return []byte(fmt.Sprintf("fake deb %s %s %s\n", p.Name, p.Version, p.Arch))
}

// Filename is p's path in the archive, as the index gives it.
func (p Pkg) Filename() string {
	// The pool path is what the index says, so it need not look like Debian's.
	return fmt.Sprintf("pool/main/%s_%s_%s.deb", p.Name, strings.ReplaceAll(p.Version, ":", "%3a"), p.Arch)
}

// SHA256 is the hex SHA-256 of b, as Release and Packages list it.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Build renders every file; tests tamper with a.Files afterwards.
func (a *Archive) Build(t testing.TB) {
	t.Helper()
	a.Files = map[string][]byte{}
	var idx bytes.Buffer
	for _, p := range a.Pkgs {
		deb := DebContent(p)
		a.Files["/"+p.Filename()] = deb
		fmt.Fprintf(&idx, "Package: %s\nVersion: %s\nArchitecture: %s\nPriority: %s\n", p.Name, p.Version, p.Arch, p.Priority)
		for k, v := range map[string]string{"Pre-Depends": p.PreDepends, "Depends": p.Depends, "Provides": p.Provides} {
			if v != "" {
				fmt.Fprintf(&idx, "%s: %s\n", k, v)
			}
		}
		fmt.Fprintf(&idx, "Description: fake %s\n a long description\n .\n over lines\nFilename: %s\nSize: %d\nSHA256: %s\n\n",
			p.Name, p.Filename(), len(deb), SHA256(deb))
	}

	var rel bytes.Buffer
	fmt.Fprintf(&rel, "Origin: Debian\nSuite: stable\nCodename: %s\nDate: Sat, 12 Oct 2024 09:08:34 UTC\n", a.Codename)
	if a.ValidUntil != "" {
		fmt.Fprintf(&rel, "Valid-Until: %s\n", a.ValidUntil)
	}
	rel.WriteString("Acquire-By-Hash: yes\nArchitectures: amd64 arm64\nComponents: main contrib\nSHA256:\n")
	for _, ext := range a.Compression {
		b := compress(t, ext, idx.Bytes())
		name := "main/binary-arm64/Packages" + ext
		a.Files["/dists/bookworm/"+name] = b
		a.Files["/dists/bookworm/main/binary-arm64/by-hash/SHA256/"+SHA256(b)] = b
		fmt.Fprintf(&rel, " %s %d %s\n", SHA256(b), len(b), name)
	}

	if a.Unsigned {
		a.Files["/dists/bookworm/InRelease"] = rel.Bytes()
		return
	}
	var signed bytes.Buffer
	w, err := clearsign.Encode(&signed, a.Signer.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(rel.Bytes())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	a.Files["/dists/bookworm/InRelease"] = signed.Bytes()
}

func compress(t testing.TB, ext string, b []byte) []byte {
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

// Server serves the fake archive over HTTPS on 127.0.0.1 and
// records the paths asked for.
type Server struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

// Serve serves a (built) under /debian/ until the test ends.
func Serve(t testing.TB, a *Archive) *Server {
	t.Helper()
	s := &Server{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.URL.Path)
		s.mu.Unlock()
		p := strings.TrimPrefix(r.URL.Path, "/debian")
		b, ok := a.Files[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

// Requests are the paths asked for so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// Asked reports whether a path ending in suffix was asked for.
func (s *Server) Asked(suffix string) bool {
	for _, p := range s.Requests() {
		if strings.HasSuffix(p, suffix) {
			return true
		}
	}
	return false
}
