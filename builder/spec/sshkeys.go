package spec

import (
	"bytes"
	"fmt"
	"os"

	"golang.org/x/crypto/ssh"
)

// validateSSHKeys requires at least one key, since password logins are
// off on the nodes, and checks every line of every file.
func (s *Spec) validateSSHKeys() []error {
	if len(s.SSHKeys) == 0 {
		return []error{usagef("--ssh-key", "none given: pass --ssh-key ~/.ssh/id_ed25519.pub (password logins are disabled on the nodes, so a key is the only way in)")}
	}
	var errs []error
	for _, f := range s.SSHKeys {
		if _, err := readKeys(f); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// readKeys returns the keys of one file in authorized_keys form, one per
// line, and names the file and line of the first one that is not a key.
func readKeys(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--ssh-key", "%v", err)
	}
	var keys [][]byte
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		// Options such as from="..." are the user's choice: the line is
		// kept verbatim.
		_, _, _, rest, err := ssh.ParseAuthorizedKey(line)
		if err != nil || len(bytes.TrimSpace(rest)) != 0 {
			hint := ""
			if bytes.Contains(line, []byte("PRIVATE KEY")) {
				hint = " (this is a private key: give the .pub file)"
			}
			return nil, usagef("--ssh-key", "%s:%d: not an OpenSSH public key%s: want lines like \"ssh-ed25519 AAAA... you@host\"", path, i+1, hint)
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return nil, usagef("--ssh-key", "%s: no keys in it", path)
	}
	return keys, nil
}

// AuthorizedKeys is the admin user's authorized_keys: every key of every
// --ssh-key file, in order, duplicates dropped.
func (s *Spec) AuthorizedKeys() ([]byte, error) {
	var out bytes.Buffer
	seen := map[string]bool{}
	for _, f := range s.SSHKeys {
		keys, err := readKeys(f)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if seen[string(k)] {
				continue
			}
			seen[string(k)] = true
			fmt.Fprintf(&out, "%s\n", k)
		}
	}
	return out.Bytes(), nil
}
