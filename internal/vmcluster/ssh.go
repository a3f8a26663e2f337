package vmcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/homecloud/homecloud/firstboot/status"
)

// Access is how the harness logs in to a node, as the family's admin
// would: the admin account and the key given to the builder, checking
// each node's host key against the one the builder made for it.
type Access struct {
	User     string
	Signer   ssh.Signer
	HostKeys map[string]ssh.PublicKey // by node name
}

// LoadAccess reads the admin's private key and the nodes' host keys from
// a builder's --out dir (cluster/nodes/<node>/ssh_host_ed25519_key.pub).
func LoadAccess(user, keyFile, outDir string) (Access, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return Access{}, fmt.Errorf("ssh key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return Access{}, fmt.Errorf("ssh key %s: %w (want an unencrypted OpenSSH private key)", keyFile, err)
	}
	a := Access{User: user, Signer: signer, HostKeys: map[string]ssh.PublicKey{}}
	pubs, _ := filepath.Glob(filepath.Join(outDir, "cluster", "nodes", "*", "ssh_host_ed25519_key.pub"))
	for _, p := range pubs {
		b, err := os.ReadFile(p)
		if err != nil {
			return Access{}, err
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(b)
		if err != nil {
			return Access{}, fmt.Errorf("host key %s: %w", p, err)
		}
		a.HostKeys[filepath.Base(filepath.Dir(p))] = k
	}
	if len(a.HostKeys) == 0 {
		return Access{}, fmt.Errorf("no host keys under %s/cluster/nodes: is it a builder's --out dir?", outDir)
	}
	return a, nil
}

// Dial logs in to the node as user with auth, checking its host key.
func (v *VM) Dial(ctx context.Context, a Access, user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	hk, ok := a.HostKeys[v.Name]
	if !ok {
		return nil, fmt.Errorf("%s: no host key from the builder to check it against", v.Name)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(v.HostPort(22)))
	cfg := &ssh.ClientConfig{User: user, Auth: auth, HostKeyCallback: ssh.FixedHostKey(hk),
		HostKeyAlgorithms: []string{hk.Type()}, Timeout: 20 * time.Second}
	d := net.Dialer{Timeout: 20 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// Under TCG a handshake can take seconds; ctx bounds it.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(time.Minute))
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: ssh %s@%s: %w", v.Name, user, addr, err)
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Run runs cmd on the node as the admin and returns its stdout.
func (v *VM) Run(ctx context.Context, a Access, cmd string) ([]byte, error) {
	c, err := v.Dial(ctx, a, a.User, ssh.PublicKeys(a.Signer))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	done := make(chan error, 1)
	go func() { done <- s.Run(cmd) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("%s: %s: %w", v.Name, cmd, ctx.Err())
	}
	if err != nil {
		return out.Bytes(), fmt.Errorf("%s: %s: %w: %s", v.Name, cmd, err, bytes.TrimSpace(errb.Bytes()))
	}
	return out.Bytes(), nil
}

// Status is the node service's view, from its status endpoint on the
// node's loopback (`homecloud-firstboot status` over SSH: the firewall
// keeps the endpoint's LAN port to the cluster's peers).
func (v *VM) Status(ctx context.Context, a Access) (*status.View, error) {
	out, err := v.Run(ctx, a, "homecloud-firstboot status")
	if err != nil {
		return nil, err
	}
	var view status.View
	if err := json.Unmarshal(out, &view); err != nil {
		return nil, fmt.Errorf("%s: status: %w", v.Name, err)
	}
	return &view, nil
}
