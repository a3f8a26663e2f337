package qemu

import (
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	base := Config{Name: "node1", Image: "/i/base.img", Kernel: "/k/vmlinuz", Initrd: "/k/initrd.img", WorkDir: "/w"}
	p := paths{overlay: "/w/disk.qcow2", qmp: "/w/qmp.sock", serial: "/w/console.log"}
	lanP := p
	lanP.lanLocal, lanP.lanHub = "/l/port-node1.sock", "/l/hub.sock"

	tests := []struct {
		name    string
		mod     func(*Config)
		p       paths
		want    []string // consecutive argv elements that must appear
		notWant []string // argv elements that must not
	}{
		{
			name: "defaults",
			p:    p,
			want: []string{
				"-M virt -cpu cortex-a53 -m 768 -smp 1",
				"-serial file:/w/console.log",
				"-qmp unix:/w/qmp.sock,server=on,wait=off",
				"-kernel /k/vmlinuz -initrd /k/initrd.img -append " + DefaultAppend,
				"-drive if=none,id=disk0,format=qcow2,file=/w/disk.qcow2 -device virtio-blk-pci,drive=disk0",
				"-nic none",
			},
			notWant: []string{"-netdev", "-no-reboot"},
		},
		{
			name: "sizes and cmdline",
			mod:  func(c *Config) { c.MemMiB, c.CPUs, c.Append = 1024, 2, "root=/dev/vda1 quiet" },
			p:    p,
			want: []string{"-m 1024 -smp 2", "-append root=/dev/vda1 quiet"},
		},
		{
			name: "LAN with MAC",
			mod:  func(c *Config) { c.LAN, c.MAC = &LAN{}, "02:AA:00:00:00:01" },
			p:    lanP,
			want: []string{
				"-netdev dgram,id=lan,local.type=unix,local.path=/l/port-node1.sock,remote.type=unix,remote.path=/l/hub.sock",
				"-device virtio-net-pci,netdev=lan,mac=02:aa:00:00:00:01",
			},
			notWant: []string{"-nic", "id=fwd"},
		},
		{
			name: "forwards sorted, restricted, loopback only",
			mod:  func(c *Config) { c.Forward = map[int]int{8443: 0, 22: 2222} },
			p:    p,
			want: []string{
				"-netdev user,id=fwd,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:0-:8443",
				"-device e1000,netdev=fwd",
			},
			notWant: []string{"-nic", "id=lan"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			if tt.mod != nil {
				tt.mod(&c)
			}
			c, err := c.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			argv := c.args(tt.p)
			joined := " " + strings.Join(argv, " ") + " "
			for _, w := range tt.want {
				if !strings.Contains(joined, " "+w+" ") {
					t.Errorf("argv lacks %q:\n%s", w, joined)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(joined, w) {
					t.Errorf("argv has %q:\n%s", w, joined)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	ok := Config{Name: "n1", Image: "i", Kernel: "k", Initrd: "r", WorkDir: "w"}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"upper-case name", func(c *Config) { c.Name = "Node" }, `name "Node"`},
		{"no image", func(c *Config) { c.Image = "" }, "no Image"},
		{"no kernel", func(c *Config) { c.Kernel = "" }, "ExtractBoot"},
		{"no initrd", func(c *Config) { c.Initrd = "" }, "ExtractBoot"},
		{"no workdir", func(c *Config) { c.WorkDir = "" }, "WorkDir"},
		{"tiny memory", func(c *Config) { c.MemMiB = 64 }, "MemMiB 64"},
		{"bad MAC", func(c *Config) { c.LAN, c.MAC = &LAN{}, "02:00:00" }, `MAC "02:00:00"`},
		{"multicast MAC", func(c *Config) { c.LAN, c.MAC = &LAN{}, "01:00:5e:00:00:fb" }, "unicast"},
		{"guest port 0", func(c *Config) { c.Forward = map[int]int{0: 22} }, "guest 0"},
		{"host port too big", func(c *Config) { c.Forward = map[int]int{22: 70000} }, "host 70000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			_, err := c.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := ok.withDefaults(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
}

func TestDerivedMAC(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"node1", "node2", "node3", "node4", "node5"} {
		c, err := Config{Name: name, Image: "i", Kernel: "k", Initrd: "r", WorkDir: "w", LAN: &LAN{}}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if again := macFor(name); again != c.MAC {
			t.Errorf("%s: MAC %s then %s: not stable", name, c.MAC, again)
		}
		if !strings.HasPrefix(c.MAC, "02:") {
			t.Errorf("%s: MAC %s is not locally administered unicast", name, c.MAC)
		}
		if other, dup := seen[c.MAC]; dup {
			t.Errorf("%s and %s share MAC %s", name, other, c.MAC)
		}
		seen[c.MAC] = name
	}
}

func TestParseUsernet(t *testing.T) {
	out := "Hub -1 (fwd):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n" +
		"  TCP[HOST_FORWARD]  11       127.0.0.1 34361       10.0.2.15    22     0     0\r\n" +
		"  TCP[HOST_FORWARD]  12       127.0.0.1  6443       10.0.2.15  6443     0     0\r\n" +
		"  UDP[236 sec]       13       10.0.2.15   68        10.0.2.2    67     0     0\r\n"
	got := parseUsernet(out)
	want := map[int]int{22: 34361, 6443: 6443}
	if len(got) != len(want) || got[22] != want[22] || got[6443] != want[6443] {
		t.Fatalf("parseUsernet = %v, want %v", got, want)
	}
}
