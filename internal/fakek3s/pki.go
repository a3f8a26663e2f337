package fakek3s

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

type pki struct {
	serverCAPEM []byte
	serving     tls.Certificate
	clientCAs   *x509.CertPool
}

// ensurePKI keeps the CAs found in dir (the builder pre-generates them so a
// secure token can pin them) and makes missing ones, then issues the API's
// serving certificate and the admin client certificate, with k3s' names.
func ensurePKI(dir string, sans []string) (*pki, error) {
	serverCA, serverCAPEM, err := ensureCA(dir, "server-ca", "k3s-server-ca")
	if err != nil {
		return nil, err
	}
	clientCA, clientCAPEM, err := ensureCA(dir, "client-ca", "k3s-client-ca")
	if err != nil {
		return nil, err
	}
	serving, err := issue(dir, "serving-kube-apiserver", serverCA, pkix.Name{CommonName: "kube-apiserver"}, sans, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	admin := pkix.Name{CommonName: "system:admin", Organization: []string{"system:masters"}}
	if _, err := issue(dir, "client-admin", clientCA, admin, nil, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(clientCAPEM)
	return &pki{serverCAPEM: serverCAPEM, serving: serving, clientCAs: pool}, nil
}

func ensureCA(dir, base, cn string) (tls.Certificate, []byte, error) {
	crt, key := filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	ca, err := tls.LoadX509KeyPair(crt, key)
	if err == nil {
		b, err := os.ReadFile(crt)
		return ca, b, err
	}
	if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, nil, fmt.Errorf("fake-k3s: load %s: %w", base, err)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM, err := writePair(crt, key, der, k)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, err = tls.LoadX509KeyPair(crt, key)
	return ca, certPEM, err
}

func issue(dir, base string, ca tls.Certificate, subj pkix.Name, sans []string, usage x509.ExtKeyUsage) (tls.Certificate, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: subj,
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if s != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, s)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Leaf, k.Public(), ca.PrivateKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("fake-k3s: issue %s: %w", base, err)
	}
	crt, key := filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	if _, err := writePair(crt, key, der, k); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(crt, key)
}

func writePair(crt, key string, der []byte, k crypto.Signer) ([]byte, error) {
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(crt, certPEM, 0o644); err != nil {
		return nil, err
	}
	return certPEM, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}
