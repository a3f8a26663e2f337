package spec

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// authorizedLine is pub as an authorized_keys line.
func authorizedLine(t *testing.T, pub ssh.PublicKey) string {
	t.Helper()
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " me@laptop"
}

func cryptoKey(t *testing.T, k crypto.PublicKey, err error) ssh.PublicKey {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// skKey builds a security-key (FIDO) public key from its wire form, which
// ssh.NewPublicKey cannot make: the type, the curve for ECDSA, the key and
// the application.
func skKey(t *testing.T, fields ...any) ssh.PublicKey {
	t.Helper()
	var blob []byte
	for _, f := range fields {
		switch f := f.(type) {
		case string:
			blob = append(blob, ssh.Marshal(struct{ S string }{f})...)
		case []byte:
			blob = append(blob, ssh.Marshal(struct{ B []byte }{f})...)
		}
	}
	pub, err := ssh.ParsePublicKey(blob)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestSSHKeyPolicy(t *testing.T) {
	edPub, _, edErr := ed25519.GenerateKey(rand.Reader)
	rsaKey := func(bits int) ssh.PublicKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return cryptoKey(t, &k.PublicKey, nil)
	}
	ecKey := func(c elliptic.Curve) *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	p256 := ecKey(elliptic.P256())
	p256Point, err := p256.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	p384 := cryptoKey(t, &ecKey(elliptic.P384()).PublicKey, nil)

	tests := []struct {
		name, line string
		want       string // empty: accepted; else part of the error
	}{
		{"ed25519", authorizedLine(t, cryptoKey(t, edPub, edErr)), ""},
		{"rsa-3072", authorizedLine(t, rsaKey(3072)), ""},
		{"rsa-2048", authorizedLine(t, rsaKey(2048)), ":1: 2048-bit RSA key: the nodes' sshd wants at least 3072 bits"},
		{"ecdsa-256", authorizedLine(t, cryptoKey(t, &p256.PublicKey, nil)), ""},
		{"ecdsa-384", authorizedLine(t, p384), ":1: ecdsa-sha2-nistp384 key: the nodes' sshd does not accept this type"},
		{"ecdsa-384 as cert-authority", "cert-authority " + authorizedLine(t, p384), ""},
		{"sk-ed25519", authorizedLine(t, skKey(t, ssh.KeyAlgoSKED25519, []byte(edPub), "ssh:")), ""},
		{"sk-ecdsa-256", authorizedLine(t, skKey(t, ssh.KeyAlgoSKECDSA256, "nistp256", p256Point.Bytes(), "ssh:")), ""},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strconv.Itoa(i)+".pub")
			write(t, path, tt.line+"\n")
			_, err := readKeys(path)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("accepted, want %q", tt.want)
			case tt.want != "":
				msg := err.Error()
				for _, w := range []string{"--ssh-key", path + tt.want, "ssh-keygen -t ed25519"} {
					if !strings.Contains(msg, w) {
						t.Errorf("error %q lacks %q", msg, w)
					}
				}
			}
		})
	}
}

// TestSSHDPolicyMatchesOverlay keeps the Go copy of the policy equal to the
// sshd config baked into the nodes, so neither can change alone.
func TestSSHDPolicyMatchesOverlay(t *testing.T) {
	conf, err := os.ReadFile("../../overlays/rootfs/etc/ssh/sshd_config.d/10-homecloud.conf.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	values := map[string][]string{}
	for _, line := range strings.Split(string(conf), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			values[strings.ToLower(f[0])] = append(values[strings.ToLower(f[0])], f[1])
		}
	}
	algos := values["pubkeyacceptedalgorithms"]
	if len(algos) != 1 {
		t.Fatalf("want one PubkeyAcceptedAlgorithms line in the sshd overlay, got %q", algos)
	}
	// "+", "-", "^" and patterns edit sshd's defaults; the Go copy only knows exact names.
	if strings.ContainsAny(algos[0][:1], "+-^") || strings.ContainsAny(algos[0], "*?!") {
		t.Fatalf("PubkeyAcceptedAlgorithms %q uses +, -, ^ or patterns: list the algorithms exactly", algos[0])
	}
	if got := strings.Split(algos[0], ","); !slices.Equal(got, pubkeyAcceptedAlgorithms) {
		t.Errorf("sshd overlay PubkeyAcceptedAlgorithms = %q, pubkeyAcceptedAlgorithms in sshkeys.go = %q: make them equal", got, pubkeyAcceptedAlgorithms)
	}
	if got := values["requiredrsasize"]; len(got) != 1 || got[0] != strconv.Itoa(requiredRSASize) {
		t.Errorf("sshd overlay RequiredRSASize = %q, requiredRSASize in sshkeys.go = %d: make them equal", got, requiredRSASize)
	}
}
