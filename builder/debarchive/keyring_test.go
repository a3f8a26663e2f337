package debarchive

import (
	"github.com/homecloud/homecloud/builder/debarchive/debtest"

	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

func TestBookwormKeyring(t *testing.T) {
	el, err := BookwormKeyring()
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, e := range el {
		for name := range e.Identities {
			uids = append(uids, name)
		}
	}
	all := strings.Join(uids, "\n")
	for _, want := range []string{"Debian Stable Release Key (12/bookworm)", "Debian Archive Automatic Signing Key (12/bookworm)"} {
		if !strings.Contains(all, want) {
			t.Errorf("embedded keyring lacks %q; has:\n%s", want, all)
		}
	}
}

func TestLoadKeyring(t *testing.T) {
	key := debtest.NewKey(t, "Test Archive Key")
	var bin bytes.Buffer
	if err := key.Serialize(&bin); err != nil {
		t.Fatal(err)
	}
	var asc bytes.Buffer
	w, err := armor.Encode(&asc, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bin.Bytes())
	w.Close()

	dir := t.TempDir()
	tests := []struct {
		name    string
		content []byte
		wantErr string
	}{
		{"binary.gpg", bin.Bytes(), ""},
		{"armored.asc", asc.Bytes(), ""},
		{"garbage.gpg", []byte("not a key"), "not an OpenPGP keyring"},
		{"empty.gpg", nil, "no keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := os.WriteFile(path, tt.content, 0o644); err != nil {
				t.Fatal(err)
			}
			el, err := LoadKeyring(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want one naming %s and containing %q", err, path, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(el) != 1 || el[0].PrimaryKey.KeyId != key.PrimaryKey.KeyId {
				t.Errorf("loaded %d keys, want the test key", len(el))
			}
		})
	}
	if _, err := LoadKeyring(filepath.Join(dir, "absent.gpg")); err == nil {
		t.Error("absent keyring: no error")
	}
}

// The host's copy of Debian's keyring loads too, when the host has one.
func TestLoadHostDebianKeyring(t *testing.T) {
	const path = "/usr/share/keyrings/debian-archive-keyring.gpg"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s absent (package debian-archive-keyring not installed)", path)
	}
	el, err := LoadKeyring(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(el) < 2 {
		t.Errorf("%s: %d keys", path, len(el))
	}
}
