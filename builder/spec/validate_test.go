package spec

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/homecloud/homecloud/boards"
)

func lookup(name string) (*boards.Board, error) { return boards.Load(name) }

func validStatic(f fixture) *Spec {
	s := defaults()
	s.Board, s.Nodes, s.Out, s.BaseImage = "pine64", 4, filepath.Join(f.dir, "out"), f.img
	s.Network, s.Gateway, s.FirstIP, s.VIP = "192.168.1.0/24", "192.168.1.1", "192.168.1.11", "192.168.1.10"
	s.SSHKeys = Paths{f.key}
	return s
}

func dhcp(s *Spec) { s.Network, s.Gateway, s.FirstIP, s.VIP = "dhcp", "", "", "" }

func TestValidate(t *testing.T) {
	f := newFixture(t)
	file := func(name, body string) string {
		p := filepath.Join(f.dir, name)
		write(t, p, body)
		return p
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	privBlock, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	privFile := file("id_ed25519", string(pem.EncodeToMemory(privBlock)))
	badKeys := file("bad.pub", pubKey(t, "ok")+"\n# fine\nssh-ed25519 notbase64 me@host\n")
	small := file("small.img", "tiny")
	notXZ := file("plain.img.xz", "not xz at all")
	iso := file("base.iso", "x")
	if err := os.MkdirAll(filepath.Join(f.dir, "debs"), 0o755); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		edit func(*Spec)
		want string // empty: valid; else the whole message or a part of it
	}{
		{"static ok", func(s *Spec) {}, ""},
		{"static without vip", func(s *Spec) { s.VIP = "" }, ""},
		{"static vip with the same prefix", func(s *Spec) { s.VIP = "192.168.1.10/24" }, ""},
		{"dhcp without vip", dhcp, ""},
		{"dhcp with vip and prefix", func(s *Spec) { dhcp(s); s.VIP = "192.168.1.250/24" }, ""},
		{"xz base image", func(s *Spec) { s.BaseImage = f.imgXZ }, ""},
		{"all options", func(s *Spec) {
			s.Domain, s.ACMEEmail, s.DataDisk, s.AdminUser = "cloud.example.org", "admin@example.org", "nas-data", "family"
			s.K3sBinary, s.K3sImages, s.Debs = f.key, f.key2, filepath.Join(f.dir, "debs")
			s.SSHKeys = Paths{f.key, f.key2}
		}, ""},
		{"qemu-virt", func(s *Spec) { s.Board = "qemu-virt" }, ""},
		{"last address before broadcast", func(s *Spec) { s.FirstIP, s.Nodes = "192.168.1.251", 4; s.VIP = "192.168.1.2" }, ""},

		{"no nodes", func(s *Spec) { s.Nodes = 0 }, "--nodes: 0: need at least 1 node"},
		{"negative nodes", func(s *Spec) { s.Nodes = -3 }, "--nodes: -3: need at least 1 node"},
		{"too many nodes", func(s *Spec) { dhcp(s); s.Nodes = 40 }, "--nodes: 40: at most 32 nodes"},
		{"unknown board", func(s *Spec) { s.Board = "rpi4" }, `--board: unknown board "rpi4": known boards are pine64, qemu-virt`},
		{"no board", func(s *Spec) { s.Board = "" }, "--board: missing: unknown board \"\": known boards are pine64, qemu-virt"},
		{"name not a label", func(s *Spec) { s.Name = "Home_Cloud" }, `--name: "Home_Cloud": want a DNS label`},
		{"name ends in dash", func(s *Spec) { s.Name = "home-" }, `--name: "home-": want a DNS label`},
		{"name too long for node names", func(s *Spec) { s.Name = strings.Repeat("a", 60) }, "longer than a DNS label's 63 characters"},

		{"network garbage", func(s *Spec) { s.Network = "lan" }, `--network: "lan": want "dhcp" or an IPv4 CIDR`},
		{"network host bits", func(s *Spec) { s.Network = "192.168.1.5/24" }, "--network 192.168.1.5/24: host bits are set: did you mean 192.168.1.0/24?"},
		{"network too small", func(s *Spec) { s.Network = "192.168.1.0/31" }, "/31 has no room"},
		{"network ipv6", func(s *Spec) { s.Network = "fd00::/64" }, "IPv6 is not supported yet"},
		{"gateway missing", func(s *Spec) { s.Gateway = "" }, "--gateway: missing: a static --network needs your router's address, e.g. --gateway 192.168.1.1"},
		{"gateway outside", func(s *Spec) { s.Gateway = "10.0.0.1" }, "--gateway: 10.0.0.1: outside --network 192.168.1.0/24"},
		{"gateway is broadcast", func(s *Spec) { s.Gateway = "192.168.1.255" }, "is the broadcast address"},
		{"gateway garbage", func(s *Spec) { s.Gateway = "router" }, `--gateway: "router": want an IPv4 address`},
		{"gateway in node range", func(s *Spec) { s.Gateway = "192.168.1.12" }, "--gateway: 192.168.1.12: is also the address of homecloud-node2 (nodes use 192.168.1.11–192.168.1.14)"},
		{"first-ip missing", func(s *Spec) { s.FirstIP = "" }, "--first-ip: missing: a static --network needs the address of node 1"},
		{"first-ip outside", func(s *Spec) { s.FirstIP = "192.168.2.11" }, "--first-ip: 192.168.2.11: outside --network 192.168.1.0/24"},
		{"first-ip is the network", func(s *Spec) { s.FirstIP = "192.168.1.0" }, "is the network's own address"},
		{"more nodes than addresses", func(s *Spec) { s.FirstIP, s.Nodes = "192.168.1.250", 6 },
			"--nodes: 6: from --first-ip 192.168.1.250, 192.168.1.0/24 has room for 5 nodes (up to 192.168.1.254)"},
		{"vip outside", func(s *Spec) { s.VIP = "10.0.0.5" }, "--vip: 10.0.0.5: outside --network 192.168.1.0/24: pick an unused address inside it"},
		{"vip is a node", func(s *Spec) { s.VIP = "192.168.1.12" }, "--vip: 192.168.1.12: is also the address of homecloud-node2"},
		{"vip is the gateway", func(s *Spec) { s.VIP = "192.168.1.1" }, "--vip: 192.168.1.1: same as --gateway"},
		{"vip is broadcast", func(s *Spec) { s.VIP = "192.168.1.255" }, "is the broadcast address"},
		{"vip other prefix", func(s *Spec) { s.VIP = "192.168.1.10/16" }, "prefix /16 differs from --network"},
		{"vip garbage", func(s *Spec) { s.VIP = "vip" }, `--vip: "vip": want an IPv4 address`},
		{"dhcp with gateway", func(s *Spec) { dhcp(s); s.Gateway = "192.168.1.1" }, "--gateway: 192.168.1.1: only for a static --network"},
		{"dhcp with first-ip", func(s *Spec) { dhcp(s); s.FirstIP = "192.168.1.11" }, "--first-ip: 192.168.1.11: only for a static --network"},
		{"dhcp vip without prefix", func(s *Spec) { dhcp(s); s.VIP = "192.168.1.250" }, "--vip: 192.168.1.250: with --network dhcp give the LAN's prefix too (e.g. --vip 192.168.1.250/24)"},
		{"dhcp vip tiny prefix", func(s *Spec) { dhcp(s); s.VIP = "192.168.1.250/32" }, "/32 has no room"},
		{"dhcp vip is broadcast", func(s *Spec) { dhcp(s); s.VIP = "192.168.1.255/24" }, "is the broadcast address"},

		{"no ssh key", func(s *Spec) { s.SSHKeys = nil }, "--ssh-key: none given"},
		{"ssh key file missing", func(s *Spec) { s.SSHKeys = Paths{filepath.Join(f.dir, "nope.pub")} }, "nope.pub: no such file"},
		{"ssh key malformed line", func(s *Spec) { s.SSHKeys = Paths{f.key, badKeys} }, "--ssh-key: " + badKeys + ":3: not an OpenSSH public key"},
		{"ssh private key", func(s *Spec) { s.SSHKeys = Paths{privFile} }, "this is a private key: give the .pub file"},
		{"ssh key file empty", func(s *Spec) { s.SSHKeys = Paths{file("empty.pub", "# nothing\n")} }, "empty.pub: no keys in it"},

		{"no base image and no pinned digest", func(s *Spec) { s.BaseImage = "" }, "--base-image: no pinned digest for board pine64: pass --base-image FILE"},
		{"base image missing", func(s *Spec) { s.BaseImage = filepath.Join(f.dir, "gone.img") }, "gone.img: no such file"},
		{"base image not img", func(s *Spec) { s.BaseImage = iso }, "--base-image: " + iso + ": want a raw disk image, .img or .img.xz"},
		{"base image not xz", func(s *Spec) { s.BaseImage = notXZ }, "not xz-compressed"},
		{"base image too small", func(s *Spec) { s.BaseImage = small }, "too small for a pine64 disk"},
		{"base image is a directory", func(s *Spec) { s.BaseImage = filepath.Join(f.dir, "dir.img"); os.Mkdir(s.BaseImage, 0o755) }, "not a regular file"},

		{"acme-email without domain", func(s *Spec) { s.ACMEEmail = "admin@example.org" }, "--acme-email: admin@example.org: needs --domain"},
		{"acme-email with a name", func(s *Spec) { s.Domain, s.ACMEEmail = "example.org", "Admin <admin@example.org>" }, "want a bare e-mail address"},
		{"domain single label", func(s *Spec) { s.Domain = "cloud" }, `--domain: "cloud": want a fully qualified name`},
		{"domain bad label", func(s *Spec) { s.Domain = "my_cloud.example.org" }, `label "my_cloud"`},
		{"domain is an address", func(s *Spec) { s.Domain = "192.168.1.10" }, "that is an address, not a domain"},
		{"domain trailing dot", func(s *Spec) { s.Domain = "example.org." }, "drop the trailing dot"},

		{"admin root", func(s *Spec) { s.AdminUser = "root" }, `--admin-user: "root": a system account`},
		{"admin bad name", func(s *Spec) { s.AdminUser = "Family Admin" }, "want a Linux user name"},
		{"data-disk label", func(s *Spec) { s.DataDisk = "my nas disk" }, "--data-disk"},
		{"data-disk-node beyond nodes", func(s *Spec) { s.DataDiskNode = s.Nodes + 1 }, "--data-disk-node: 5: want a node number from 1 to 4"},
		{"data-disk-node negative", func(s *Spec) { s.DataDiskNode = -1 }, "--data-disk-node: -1"},
		{"unknown service", func(s *Spec) { s.Services["plex"] = true }, `--services: unknown service "plex": known services are traefik`},
		{"k3s binary missing", func(s *Spec) { s.K3sBinary = filepath.Join(f.dir, "k3s") }, "no such file or directory: check the path"},
		{"k3s images missing", func(s *Spec) { s.K3sImages = filepath.Join(f.dir, "images.tar") }, "--k3s-images: stat"},
		{"test-k3s with k3s-binary", func(s *Spec) { s.TestK3s, s.K3sBinary = f.key, f.key2 }, "--test-k3s: cannot be combined with --k3s-binary"},
		{"debs not a dir", func(s *Spec) { s.Debs = f.key }, "--debs: " + f.key + ": not a directory"},
		{"out is a file", func(s *Spec) { s.Out = f.key }, "--out: " + f.key + ": exists and is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validStatic(f)
			tt.edit(s)
			err := s.Validate(lookup)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v, want %q", s, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %q\nwant it to contain %q", err, tt.want)
			}
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Errorf("error %T is not a *UsageError: the command would not exit 2", err)
			}
			if !strings.HasPrefix(err.Error(), "--") {
				t.Errorf("error %q does not start with the flag it is about", err)
			}
		})
	}
}

// Every problem is reported in one run, each on its own line.
func TestValidateReportsAll(t *testing.T) {
	f := newFixture(t)
	s := validStatic(f)
	s.Nodes, s.Name, s.VIP = 0, "Bad", "10.0.0.1"
	err := s.Validate(lookup)
	if err == nil {
		t.Fatal("Validate accepted three mistakes")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), err)
	}
	for i, prefix := range []string{"--nodes:", "--name:", "--vip:"} {
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d = %q, want it to start with %q", i+1, lines[i], prefix)
		}
	}
}

func TestNodeAddrs(t *testing.T) {
	tests := []struct {
		network, first string
		nodes          int
		want           string
	}{
		{"192.168.1.0/24", "192.168.1.11", 4, "192.168.1.11 192.168.1.12 192.168.1.13 192.168.1.14"},
		{"10.0.0.0/16", "10.0.0.254", 3, "10.0.0.254 10.0.0.255 10.0.1.0"}, // .255 and .0 are hosts in a /16
		{"dhcp", "", 3, ""},
	}
	for _, tt := range tests {
		s := &Spec{Network: tt.network, FirstIP: tt.first, Nodes: tt.nodes}
		var got []string
		for _, a := range s.NodeAddrs() {
			got = append(got, a.String())
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%s from %s: NodeAddrs = %v, want %s", tt.network, tt.first, got, tt.want)
		}
	}
}

func TestAccessors(t *testing.T) {
	s := &Spec{Network: "dhcp", VIP: "192.168.1.250/24"}
	if s.Static() || s.Prefix().String() != "192.168.1.0/24" || s.VIPAddr().String() != "192.168.1.250" {
		t.Errorf("dhcp: static %v prefix %s vip %s", s.Static(), s.Prefix(), s.VIPAddr())
	}
	s = &Spec{Network: "192.168.1.0/24", Gateway: "192.168.1.1", VIP: "192.168.1.10"}
	if !s.Static() || s.Prefix().String() != "192.168.1.0/24" || s.VIPAddr().String() != "192.168.1.10" || s.GatewayAddr().String() != "192.168.1.1" {
		t.Errorf("static: static %v prefix %s vip %s gw %s", s.Static(), s.Prefix(), s.VIPAddr(), s.GatewayAddr())
	}
}
