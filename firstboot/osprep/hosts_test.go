package osprep

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const debianLoopback = "127.0.0.1\tlocalhost\n127.0.1.1\thome-node2\n::1\tlocalhost ip6-localhost ip6-loopback\n"

func TestHostsFile(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{
			// A power cut right after an in-place write: ext4's delayed
			// allocation leaves the file empty. It must heal, not keep
			// only the node's own line.
			name: "empty",
			in:   "",
			want: debianLoopback,
		},
		{
			name: "blank lines only",
			in:   "\n\n",
			want: debianLoopback,
		},
		{
			// What the in-place rewrite left after an emptied file.
			name: "only the own line survived",
			in:   "127.0.1.1\thome-node2\n",
			want: "127.0.0.1\tlocalhost\n127.0.1.1\thome-node2\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		},
		{
			name: "armbian base",
			in: "127.0.0.1   localhost\n127.0.1.1   pine64\n::1         localhost pine64 ip6-localhost ip6-loopback\n" +
				"fe00::0     ip6-localnet\nff00::0     ip6-mcastprefix\nff02::1     ip6-allnodes\nff02::2     ip6-allrouters\n",
			want: "127.0.0.1   localhost\n127.0.1.1\thome-node2\n::1         localhost pine64 ip6-localhost ip6-loopback\n" +
				"fe00::0     ip6-localnet\nff00::0     ip6-mcastprefix\nff02::1     ip6-allnodes\nff02::2     ip6-allrouters\n",
		},
		{
			name: "debian without 127.0.1.1, blank line and comment kept",
			in:   "127.0.0.1\tlocalhost\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n",
			want: "127.0.0.1\tlocalhost\n127.0.1.1\thome-node2\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\n",
		},
		{
			name: "already right",
			in:   debianLoopback,
			want: debianLoopback,
		},
		{
			name: "ipv6 loopback lost",
			in:   "127.0.0.1\tlocalhost\n127.0.1.1\thome-node2\n192.168.1.5\tnas\n",
			want: "127.0.0.1\tlocalhost\n127.0.1.1\thome-node2\n::1\tlocalhost ip6-localhost ip6-loopback\n192.168.1.5\tnas\n",
		},
		{
			name: "ipv4 loopback lost, other entries kept in order",
			in:   "192.168.1.5 nas\n127.0.1.1 pine64\n::1 localhost ip6-localhost ip6-loopback\n",
			want: "127.0.0.1\tlocalhost\n192.168.1.5 nas\n127.0.1.1\thome-node2\n::1 localhost ip6-localhost ip6-loopback\n",
		},
		{
			name: "only some ipv6 names missing",
			in:   "127.0.0.1 localhost\n127.0.1.1 home-node2\n::1 localhost\n",
			want: "127.0.0.1 localhost\n127.0.1.1\thome-node2\n::1\tip6-localhost ip6-loopback\n::1 localhost\n",
		},
		{
			name: "duplicate 127.0.1.1 lines become one",
			in:   "127.0.0.1\tlocalhost\n127.0.1.1\told\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\thome-node2\n",
			want: debianLoopback,
		},
		{
			name: "commented loopback does not count, 127.0.1.10 is not 127.0.1.1",
			in:   "# 127.0.0.1 localhost\n127.0.1.10\tother # not ours\n",
			want: "127.0.0.1\tlocalhost\n127.0.1.1\thome-node2\n::1\tlocalhost ip6-localhost ip6-loopback\n# 127.0.0.1 localhost\n127.0.1.10\tother # not ours\n",
		},
		{
			name: "localhost on another 127.0.0.1 line, no trailing newline, CRLF",
			in:   "127.0.0.1 localhost.localdomain localhost\r\n::1 ip6-localhost ip6-loopback localhost",
			want: "127.0.0.1 localhost.localdomain localhost\n127.0.1.1\thome-node2\n::1 ip6-localhost ip6-loopback localhost\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := string(hostsFile([]byte(tc.in), "home-node2"))
			if got != tc.want {
				t.Errorf("hostsFile(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
			if again := string(hostsFile([]byte(got), "home-node2")); again != got {
				t.Errorf("not idempotent:\n once  %q\n twice %q", got, again)
			}
		})
	}
}

// An /etc/hosts emptied by a power cut is repaired by the re-run, through
// an atomic replace that leaves no temp file behind.
func TestHostnameRepairsEmptiedHosts(t *testing.T) {
	root := t.TempDir()
	etc := filepath.Join(root, "etc")
	os.MkdirAll(etc, 0o755)
	os.WriteFile(filepath.Join(etc, "hostname"), nil, 0o644)
	os.WriteFile(filepath.Join(etc, "hosts"), nil, 0o644)
	p := &Prep{Root: root}
	if err := p.Hostname(context.Background(), "home-node2"); err != nil {
		t.Fatal(err)
	}
	h, _ := os.ReadFile(filepath.Join(etc, "hostname"))
	hosts, _ := os.ReadFile(filepath.Join(etc, "hosts"))
	if string(h) != "home-node2\n" || string(hosts) != debianLoopback {
		t.Fatalf("hostname %q hosts %q", h, hosts)
	}
	fi, err := os.Stat(filepath.Join(etc, "hosts"))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("hosts mode %v (%v)", fi.Mode(), err)
	}
	ents, _ := os.ReadDir(etc)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temp file left in etc: %s", e.Name())
		}
	}
}
