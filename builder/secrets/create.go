package secrets

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/homecloud/homecloud/internal/cluster"
)

// create makes a new cluster directory. Everything is written into a
// temporary sibling that is renamed into place, so a crash leaves either
// nothing or a complete directory.
func create(dir, name string, now time.Time) error {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+DirName+".tmp*")
	if err != nil {
		return fmt.Errorf("make cluster secrets: %w", err)
	}
	defer os.RemoveAll(tmp) // gone after a successful rename
	if err := os.Chmod(tmp, dirMode); err != nil {
		return fmt.Errorf("make cluster secrets: %w", err)
	}
	ca, err := cluster.NewCA(name, now)
	if err != nil {
		return err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return fmt.Errorf("encode CA key: %w", err)
	}
	k3s, err := newK3s(now)
	if err != nil {
		return err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("k3s token: %w", err)
	}
	var serverCA []byte
	for _, f := range k3s {
		if f.rel == k3sServerCA {
			serverCA = f.data
		}
	}
	inf, err := json.MarshalIndent(info{Name: name, ID: cluster.ID(ca.Cert)}, "", "  ")
	if err != nil {
		return err
	}
	files := []struct {
		rel  string
		data []byte
	}{
		{caCert, ca.CertPEM()},
		{caKey, keyPEM},
		{tokenFile, []byte(k3sToken(serverCA, hex.EncodeToString(secret)))},
		{infoFile, append(inf, '\n')},
	}
	for _, f := range k3s {
		files = append(files, struct {
			rel  string
			data []byte
		}{filepath.Join(k3sDir, f.rel), f.data})
	}
	for _, f := range files {
		if err := writeSecret(filepath.Join(tmp, f.rel), f.data); err != nil {
			return err
		}
	}
	if err := os.Mkdir(filepath.Join(tmp, nodesDir), dirMode); err != nil {
		return fmt.Errorf("make cluster secrets: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another builder run made it first: use theirs.
		if errors.Is(err, os.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return nil
		}
		return fmt.Errorf("make cluster secrets: %w", err)
	}
	syncDir(filepath.Dir(dir))
	return nil
}

// writeSecret writes one 0600 file atomically, making its 0700 parents.
func writeSecret(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return cluster.WriteFileAtomic(path, data, secretMode)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
