package testimage

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Counts of generated entries: each directory is well past one 4 KiB
// block of entries, so e2fsck -D gives it an htree index.
const (
	etcFiles     = 220
	usrBinFiles  = 300
	unitFiles    = 260
	wantsEntries = 12
)

// buildTree lays out a merged-/usr Debian/Armbian-like root at dir.
// Ownership follows the user running the test (root in CI).
func buildTree(t testing.TB, dir string) {
	t.Helper()
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/bash\n" +
			"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
			"sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n",
		"etc/shadow":                                  "root:$y$j9T$armbian$1234:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
		"etc/group":                                   "root:x:0:\ndaemon:x:1:\n",
		"etc/hostname":                                "pine64\n",
		"etc/hosts":                                   "127.0.0.1 localhost\n127.0.1.1 pine64\n",
		"etc/fstab":                                   "UUID=0000 / ext4 defaults,noatime,commit=600,errors=remount-ro 0 1\n",
		"etc/os-release":                              "PRETTY_NAME=\"Armbian 23.8 Bookworm\"\nID=debian\nVERSION_CODENAME=bookworm\n",
		"etc/ssh/sshd_config":                         "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\n",
		"etc/ssh/sshd_config.d/.keep":                 "",
		"etc/armbian-release":                         "BOARD=pine64so\nLINUXFAMILY=sunxi64\n",
		"boot/extlinux/extlinux.conf":                 "label Armbian\n  kernel /boot/Image\n  fdt /boot/dtb/allwinner/sun50i-a64-sopine-baseboard.dtb\n  append root=LABEL=armbi_root rw\n",
		"boot/armbianEnv.txt":                         "rootdev=LABEL=armbi_root\n",
		"root/.not_logged_in_yet":                     "",
		"lib/systemd/system/ssh.service":              "[Unit]\nDescription=OpenBSD Secure Shell server\n[Install]\nWantedBy=multi-user.target\n",
		"lib/systemd/system/armbian-firstrun.service": "[Unit]\nDescription=Armbian first run tasks\n",
	}
	for i := 0; i < etcFiles; i++ {
		files[fmt.Sprintf("etc/fixture-config-file-%03d.conf", i)] = fmt.Sprintf("setting=%d\n", i)
	}
	for i := 0; i < usrBinFiles; i++ {
		files[fmt.Sprintf("usr/bin/fixture-program-%03d", i)] = "#!/bin/sh\nexit 0\n"
	}
	for i := 0; i < unitFiles; i++ {
		files[fmt.Sprintf("lib/systemd/system/fixture-unit-%03d.service", i)] = "[Unit]\nDescription=fixture\n"
	}
	// Merged /usr: lib/ in the map really lives in usr/lib.
	for name, content := range files {
		if len(name) > 4 && name[:4] == "lib/" {
			name = "usr/" + name
		}
		writeFile(t, filepath.Join(dir, name), content)
	}
	for _, d := range []string{"usr/sbin", "var/lib", "tmp", "home", "etc/systemd/system/multi-user.target.wants"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range [][2]string{
		{"usr/lib", "lib"}, {"usr/bin", "bin"}, {"usr/sbin", "sbin"},
		{"/lib/systemd/system/ssh.service", "etc/systemd/system/multi-user.target.wants/ssh.service"},
		{"/lib/systemd/system/ssh.service", "etc/systemd/system/sshd.service"},
	} {
		if err := os.Symlink(l[0], filepath.Join(dir, l[1])); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < wantsEntries; i++ {
		name := fmt.Sprintf("fixture-unit-%03d.service", i)
		if err := os.Symlink("/lib/systemd/system/"+name, filepath.Join(dir, "etc/systemd/system/multi-user.target.wants", name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "etc/shadow"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
