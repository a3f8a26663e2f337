package spec

import (
	"bytes"
	"crypto/rsa"
	"fmt"
	"os"
	"slices"
	"strings"

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

// The nodes' sshd takes only these client key algorithms and RSA sizes.
// They copy PubkeyAcceptedAlgorithms and RequiredRSASize of
// overlays/rootfs/etc/ssh/sshd_config.d/10-homecloud.conf.tmpl, and
// TestSSHDPolicyMatchesOverlay fails when the two differ. (A copy, since
// package overlays does not export its tree and rendering every overlay
// here would tie validation to the render data.) Checking keys against
// them turns "images nobody can log into" into a usage error.
var (
	pubkeyAcceptedAlgorithms = []string{"ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com", "sk-ssh-ed25519@openssh.com",
		"rsa-sha2-512", "rsa-sha2-256", "ecdsa-sha2-nistp256", "sk-ecdsa-sha2-nistp256@openssh.com"}
	requiredRSASize = 3072
)

// signatureAlgorithms are the algorithms a key of this authorized_keys type
// can log in with: an "ssh-rsa" key signs as rsa-sha2-512/256 (or SHA-1
// ssh-rsa), every other type only under its own name.
func signatureAlgorithms(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	}
	return []string{keyType}
}

// sshdRefuses says why the nodes' sshd would refuse logins with this key,
// or "" if it takes them.
func sshdRefuses(pub ssh.PublicKey, options []string) string {
	// A cert-authority key only signs certificates: its type is governed by
	// CASignatureAlgorithms, and the type that logs in is the certificate's.
	ca := slices.ContainsFunc(options, func(o string) bool { return strings.EqualFold(o, "cert-authority") })
	if !ca && !slices.ContainsFunc(signatureAlgorithms(pub.Type()), func(a string) bool {
		return slices.Contains(pubkeyAcceptedAlgorithms, a)
	}) {
		return fmt.Sprintf("%s key: the nodes' sshd does not accept this type (PubkeyAcceptedAlgorithms)", pub.Type())
	}
	if c, ok := pub.(*ssh.Certificate); ok {
		pub = c.Key
	}
	if ck, ok := pub.(ssh.CryptoPublicKey); ok {
		if k, ok := ck.CryptoPublicKey().(*rsa.PublicKey); ok && k.N.BitLen() < requiredRSASize {
			return fmt.Sprintf("%d-bit RSA key: the nodes' sshd wants at least %d bits (RequiredRSASize)", k.N.BitLen(), requiredRSASize)
		}
	}
	return ""
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
		pub, _, options, rest, err := ssh.ParseAuthorizedKey(line)
		if err != nil || len(bytes.TrimSpace(rest)) != 0 {
			hint := ""
			if bytes.Contains(line, []byte("PRIVATE KEY")) {
				hint = " (this is a private key: give the .pub file)"
			}
			return nil, usagef("--ssh-key", "%s:%d: not an OpenSSH public key%s: want lines like \"ssh-ed25519 AAAA... you@host\"", path, i+1, hint)
		}
		if why := sshdRefuses(pub, options); why != "" {
			return nil, usagef("--ssh-key", "%s:%d: %s, so it could not log in: make an ed25519 key: ssh-keygen -t ed25519 (or RSA of at least %d bits: ssh-keygen -t rsa -b 4096)", path, i+1, why, requiredRSASize)
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
