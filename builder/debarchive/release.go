package debarchive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"pault.ag/go/debian/control"

	"github.com/homecloud/homecloud/builder/fetch"
)

// maxInRelease bounds what we read before checking a signature (Debian's
// is ~150 KB).
const maxInRelease = 16 << 20

// release is the part of a Release file this package uses.
type release struct {
	Suite         string
	Codename      string
	ValidUntil    string `control:"Valid-Until"`
	Architectures string
	Components    string
	AcquireByHash string                   `control:"Acquire-By-Hash"`
	SHA256        []control.SHA256FileHash `delim:"\n" strip:"\n\r\t "`
}

// release fetches dists/<suite>/InRelease, checks its signature against the
// keyring and its fields against what was asked for. A verified copy is
// kept in the cache dir so that --offline can resolve from it later; it is
// re-verified on every read, so the keyring stays the only trust anchor.
func (a *Archive) release(ctx context.Context) (*release, error) {
	url := a.distURL("InRelease")
	saved := filepath.Join(a.Cache.Dir, "debarchive", strings.NewReplacer("/", "_", ":", "_").Replace(a.BaseURL+"_"+a.Suite)+".InRelease")

	var signed []byte
	var err error
	if a.Cache.Offline {
		signed, err = os.ReadFile(saved)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("release file of %s %s %w and --offline given: pass --debs DIR or run once without --offline", a.BaseURL, a.Suite, fetch.ErrNotCached)
		}
		if err != nil {
			return nil, fmt.Errorf("read saved InRelease: %w", err)
		}
	} else if signed, err = a.Cache.FetchUnpinned(ctx, "InRelease of "+a.Suite, url, maxInRelease); err != nil {
		return nil, err
	}

	text, err := verifyClearsigned(signed, a.Keyring)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	rel, err := parseRelease(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if err := a.checkRelease(rel, time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if !a.Cache.Offline {
		if err := writeFileAtomic(saved, signed); err != nil {
			a.logger().Warn("cannot keep InRelease for offline use", "err", err)
		}
	}
	return rel, nil
}

// verifyClearsigned returns the signed text of an OpenPGP clearsigned
// document, or an error unless a key of the keyring made a valid signature.
// An unsigned document is an error: the signature is the only thing that
// ties the archive to Debian.
func verifyClearsigned(doc []byte, keyring openpgp.EntityList) ([]byte, error) {
	if len(keyring) == 0 {
		return nil, errors.New("no keys to check the InRelease signature with")
	}
	block, _ := clearsign.Decode(doc)
	if block == nil {
		return nil, errors.New("InRelease is not an OpenPGP clearsigned document")
	}
	if _, err := block.VerifySignature(keyring, nil); err != nil {
		return nil, fmt.Errorf("InRelease signature does not verify against the keyring: %w", err)
	}
	return block.Plaintext, nil
}

func parseRelease(text []byte) (*release, error) {
	dec, err := control.NewDecoder(bytes.NewReader(text), nil)
	if err != nil {
		return nil, fmt.Errorf("parse Release: %w", err)
	}
	var rel release
	if err := dec.Decode(&rel); err != nil {
		return nil, fmt.Errorf("parse Release: %w", err)
	}
	return &rel, nil
}

// checkRelease refuses a validly signed Release of another suite (a mirror
// answering "stable" for "bookworm" after a release is the common case) or
// an expired one (a replayed old Release would pin old, vulnerable debs).
func (a *Archive) checkRelease(rel *release, now time.Time) error {
	if rel.Suite != a.Suite && rel.Codename != a.Suite {
		return fmt.Errorf("Release is for suite %q (codename %q), not %q", rel.Suite, rel.Codename, a.Suite)
	}
	if rel.ValidUntil != "" {
		until, err := parseDebianTime(rel.ValidUntil)
		if err != nil {
			return fmt.Errorf("Release Valid-Until %q: %w", rel.ValidUntil, err)
		}
		if now.After(until) {
			return fmt.Errorf("Release expired at %s (Valid-Until): the mirror is stale or replayed", until)
		}
	}
	if archs := strings.Fields(rel.Architectures); len(archs) > 0 && !slices.Contains(archs, a.Arch) {
		return fmt.Errorf("suite %s has no architecture %s (it has %s)", a.Suite, a.Arch, rel.Architectures)
	}
	if comps := strings.Fields(rel.Components); len(comps) > 0 && !slices.Contains(comps, a.Component) {
		return fmt.Errorf("suite %s has no component %s (it has %s)", a.Suite, a.Component, rel.Components)
	}
	return nil
}

func parseDebianTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC1123, time.RFC1123Z, "Mon, 2 Jan 2006 15:04:05 MST", "Mon, 2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errors.New("not an RFC 2822 date")
}

// indexFile picks the Packages index for the component and arch, with its
// SHA-256 from the signed Release. gzip comes first: bookworm's arm64 index
// is 11.9 MB as .gz and 8.7 MB as .xz, but pure-Go xz decoders took 2.4 s
// (xi2/xz) and 22 s (ulikunitz/xz) to unpack it here, gzip 0.3 s.
func (a *Archive) indexFile(rel *release) (path, sha string, err error) {
	base := fmt.Sprintf("%s/binary-%s/Packages", a.Component, a.Arch)
	for _, ext := range []string{".gz", ".xz"} {
		for _, h := range rel.SHA256 {
			if h.Filename == base+ext {
				return h.Filename, h.Hash, nil
			}
		}
	}
	return "", "", fmt.Errorf("Release lists no %s.gz or %s.xz", base, base)
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
