package secrets

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// K3sTLSDir is where k3s looks for its certificate authorities. Files
// present there before k3s first starts are used instead of generated,
// which is what lets the secure token (it pins the server CA's hash) be
// written into every image: no node trusts on first use.
const K3sTLSDir = "/var/lib/rancher/k3s/server/tls"

// The files k3s expects, as its contrib/util/generate-custom-ca-certs.sh
// makes them: P-256 CAs, an RSA service-account key.
const k3sServerCA = "server-ca.crt"

type k3sCA struct{ name, cn string }

func k3sCAs() []k3sCA {
	return []k3sCA{
		{"server-ca", "k3s-server-ca"},
		{"client-ca", "k3s-client-ca"},
		{"request-header-ca", "k3s-request-header-ca"},
		{"etcd/server-ca", "etcd-server-ca"},
		{"etcd/peer-ca", "etcd-peer-ca"},
	}
}

const k3sServiceKey = "service.key"

// k3sCAValidity matches the self-signed CAs k3s makes for itself.
const k3sCAValidity = 10 * 365 * 24 * time.Hour

// k3sFile is one file under K3sTLSDir; rel is relative to it.
type k3sFile struct {
	rel    string
	data   []byte
	secret bool
}

func newK3s(now time.Time) ([]k3sFile, error) {
	var files []k3sFile
	for _, ca := range k3sCAs() {
		cert, key, err := newSelfSignedCA(fmt.Sprintf("%s@%d", ca.cn, now.Unix()), now)
		if err != nil {
			return nil, fmt.Errorf("k3s %s: %w", ca.name, err)
		}
		files = append(files, k3sFile{ca.name + ".crt", cert, false}, k3sFile{ca.name + ".key", key, true})
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("k3s service account key: %w", err)
	}
	sk := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})
	return append(files, k3sFile{k3sServiceKey, sk, true}), nil
}

func newSelfSignedCA(cn string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-24 * time.Hour), // boards boot without an RTC
		NotAfter:              now.Add(k3sCAValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

func loadK3s(dir string) ([]k3sFile, error) {
	var files []k3sFile
	for _, ca := range k3sCAs() {
		cert, err := os.ReadFile(filepath.Join(dir, ca.name+".crt"))
		if err != nil {
			return nil, fmt.Errorf("k3s CA: %w", err)
		}
		key, err := os.ReadFile(filepath.Join(dir, ca.name+".key"))
		if err != nil {
			return nil, fmt.Errorf("k3s CA: %w", err)
		}
		if _, err := tls.X509KeyPair(cert, key); err != nil {
			return nil, fmt.Errorf("k3s CA %s: %w", filepath.Join(dir, ca.name), err)
		}
		files = append(files, k3sFile{ca.name + ".crt", cert, false}, k3sFile{ca.name + ".key", key, true})
	}
	sk, err := os.ReadFile(filepath.Join(dir, k3sServiceKey))
	if err != nil {
		return nil, fmt.Errorf("k3s service account key: %w", err)
	}
	if blk, _ := pem.Decode(sk); blk == nil || blk.Type != "RSA PRIVATE KEY" {
		return nil, fmt.Errorf("k3s service account key %s: no RSA PRIVATE KEY block", filepath.Join(dir, k3sServiceKey))
	}
	return append(files, k3sFile{k3sServiceKey, sk, true}), nil
}

func (s *Secrets) k3sServerCA() []byte {
	for _, f := range s.k3s {
		if f.rel == k3sServerCA {
			return f.data
		}
	}
	return nil
}

// k3sToken is k3s' secure token: the joining node checks the server's CA
// bundle against the hash before it sends the secret. For a self-signed
// server CA the hash is the SHA-256 of server-ca.crt as stored on disk.
func k3sToken(serverCA []byte, secret string) string {
	sum := sha256.Sum256(serverCA)
	return "K10" + hex.EncodeToString(sum[:]) + "::server:" + secret
}

func checkToken(tok string, serverCA []byte) error {
	rest, ok := strings.CutPrefix(tok, "K10")
	hash, creds, ok2 := strings.Cut(rest, "::")
	if !ok || !ok2 || !strings.HasPrefix(creds, "server:") || len(creds) == len("server:") {
		return errors.New("not a K10<hash>::server:<secret> token")
	}
	sum := sha256.Sum256(serverCA)
	if !bytes.Equal([]byte(hash), []byte(hex.EncodeToString(sum[:]))) {
		return errors.New("its CA hash does not match k3s/server-ca.crt")
	}
	return nil
}
