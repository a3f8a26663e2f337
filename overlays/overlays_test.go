package overlays

import (
	"strings"
	"testing"

	"github.com/homecloud/homecloud/internal/cluster"
)

type board struct{ EthDriver, EthPath string }

type data struct {
	Node      cluster.Node
	Board     board
	AdminUser string
}

func sample(mode string) data {
	n := cluster.Node{Network: cluster.Network{Mode: mode, Address: "10.9.0.11/24", Gateway: "10.9.0.1", MAC: "02:aa:bb:cc:dd:01"}}
	return data{Node: n, Board: board{EthDriver: "virtio_net"}, AdminUser: "family"}
}

func find(t *testing.T, files []File, p string) File {
	t.Helper()
	for _, f := range files {
		if f.Path == p {
			return f
		}
	}
	t.Fatalf("%s not rendered", p)
	return File{}
}

func TestRender(t *testing.T) {
	tests := []struct {
		mode, path string
		want       []string
		wantNot    []string
	}{
		{"static", "/etc/systemd/network/10-homecloud.network", []string{"Address=10.9.0.11/24", "Gateway=10.9.0.1", "Driver=virtio_net"}, []string{"DHCP="}},
		{"dhcp", "/etc/systemd/network/10-homecloud.network", []string{"DHCP=ipv4"}, []string{"Address="}},
		{"static", "/etc/systemd/network/10-homecloud.link", []string{"MACAddress=02:aa:bb:cc:dd:01"}, nil},
		{"static", "/etc/ssh/sshd_config.d/10-homecloud.conf", []string{"AllowUsers family", "PermitRootLogin no", "PasswordAuthentication no"}, nil},
		{"static", "/etc/sysusers.d/homecloud.conf", []string{"u family "}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.mode+tt.path, func(t *testing.T) {
			files, err := Render(sample(tt.mode))
			if err != nil {
				t.Fatal(err)
			}
			f := find(t, files, tt.path)
			for _, w := range tt.want {
				if !strings.Contains(string(f.Data), w) {
					t.Errorf("%s lacks %q:\n%s", tt.path, w, f.Data)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(string(f.Data), w) {
					t.Errorf("%s has %q:\n%s", tt.path, w, f.Data)
				}
			}
			if f.Mode != 0o644 {
				t.Errorf("mode %v", f.Mode)
			}
		})
	}
}

func TestRenderNamesTemplateAndField(t *testing.T) {
	_, err := Render(struct{ Node cluster.Node }{})
	if err == nil || !strings.Contains(err.Error(), ".tmpl") {
		t.Fatalf("error %v does not name the template", err)
	}
}

func TestNoTemplateLeftUnrendered(t *testing.T) {
	files, err := Render(sample("static"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f.Path, ".tmpl") || strings.Contains(string(f.Data), "{{") {
			t.Errorf("%s still holds template syntax", f.Path)
		}
	}
}

// A board with a path matches its LAN interface by it, in both the .link
// (the MAC) and the .network (the address), and not by driver.
func TestRenderMatchesByPath(t *testing.T) {
	d := sample("static")
	d.Board = board{EthDriver: "st_mac100", EthPath: "platform-1c30000.ethernet"}
	files, err := Render(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/etc/systemd/network/10-homecloud.network", "/etc/systemd/network/10-homecloud.link"} {
		f := string(find(t, files, p).Data)
		if !strings.Contains(f, "[Match]\nPath=platform-1c30000.ethernet\n") || strings.Contains(f, "Driver=") {
			t.Errorf("%s does not match by path alone:\n%s", p, f)
		}
	}
}
