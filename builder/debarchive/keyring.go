package debarchive

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"os"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// keys holds Debian's bookworm archive keys, copied from the
// debian-archive-keyring package (2023.3+deb12u2): public data, embedded so
// that a build trusts the same keys on any host, whatever its own keyring.
//
//go:embed keys/*.gpg
var keys embed.FS

// BookwormKeyring returns the embedded Debian 12 (bookworm) archive keys:
// the stable release key and the archive automatic signing key, which
// together sign bookworm's InRelease.
func BookwormKeyring() (openpgp.EntityList, error) {
	var all openpgp.EntityList
	for _, name := range []string{"debian-archive-bookworm-stable.gpg", "debian-archive-bookworm-automatic.gpg"} {
		b, err := keys.ReadFile("keys/" + name)
		if err != nil {
			return nil, fmt.Errorf("read embedded key %s: %w", name, err)
		}
		el, err := readKeyring(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("parse embedded key %s: %w", name, err)
		}
		all = append(all, el...)
	}
	return all, nil
}

// LoadKeyring reads an OpenPGP keyring file: binary, like
// /usr/share/keyrings/debian-archive-keyring.gpg, or ASCII-armored (.asc).
func LoadKeyring(path string) (openpgp.EntityList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	el, err := readKeyring(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return el, nil
}

func readKeyring(r io.ReadSeeker) (openpgp.EntityList, error) {
	head := make([]byte, 10)
	n, _ := io.ReadFull(r, head)
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	var el openpgp.EntityList
	var err error
	if bytes.HasPrefix(head[:n], []byte("-----BEGIN")) {
		el, err = openpgp.ReadArmoredKeyRing(r)
	} else {
		el, err = openpgp.ReadKeyRing(r)
	}
	if err != nil {
		return nil, fmt.Errorf("not an OpenPGP keyring: %w", err)
	}
	if len(el) == 0 {
		return nil, fmt.Errorf("no keys in keyring")
	}
	return el, nil
}
