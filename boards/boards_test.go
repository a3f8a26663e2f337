package boards

import (
	"errors"
	"strings"
	"testing"
)

func TestLoadKnownBoards(t *testing.T) {
	pine, err := Load("pine64")
	if err != nil {
		t.Fatal(err)
	}
	if pine.Arch != "arm64" || pine.SoC.Family != "sun50i-a64" || pine.Console != "ttyS0,115200" {
		t.Errorf("pine64: arch %q soc %q console %q", pine.Arch, pine.SoC.Family, pine.Console)
	}
	if pine.DTB != "allwinner/sun50i-a64-pine64-lts.dtb" {
		t.Errorf("pine64 dtb = %q", pine.DTB)
	}
	if pine.Disk.PartitionTable != "mbr" || pine.Disk.RootPartitionStart != 4<<20 {
		t.Errorf("pine64 disk = %+v, want mbr with root at 4 MiB", pine.Disk)
	}
	if pine.UBoot == nil {
		t.Fatal("pine64 has no u-boot")
	}
	if pine.UBoot.Package != "u-boot-sunxi" || pine.UBoot.Dir != "/usr/lib/u-boot/pine64-lts/" {
		t.Errorf("pine64 u-boot from %s %s", pine.UBoot.Package, pine.UBoot.Dir)
	}
	wantBlobs := []Blob{{"sunxi-spl.bin", 8192}, {"u-boot-sunxi-with-spl.fit.itb", 40960}}
	if len(pine.UBoot.Blobs) != len(wantBlobs) {
		t.Fatalf("pine64 blobs = %+v", pine.UBoot.Blobs)
	}
	for i, b := range wantBlobs {
		if pine.UBoot.Blobs[i] != b {
			t.Errorf("pine64 blob %d = %+v, want %+v", i, pine.UBoot.Blobs[i], b)
		}
	}
	for _, want := range []string{"linux-image-current-sunxi64", "armbian-firmware"} {
		if !contains(pine.HoldPackages.Armbian, want) {
			t.Errorf("pine64 Armbian holds %v lack %s", pine.HoldPackages.Armbian, want)
		}
	}
	for _, want := range []string{"linux-image-arm64", "u-boot-sunxi"} {
		if !contains(pine.HoldPackages.Debian, want) {
			t.Errorf("pine64 Debian holds %v lack %s", pine.HoldPackages.Debian, want)
		}
	}
	if !strings.Contains(pine.BaseImage.URLPattern, "Pine64so_bookworm") {
		t.Errorf("pine64 base image pattern %q is not Armbian's Pine64so bookworm image", pine.BaseImage.URLPattern)
	}

	virt, err := Load("qemu-virt")
	if err != nil {
		t.Fatal(err)
	}
	if virt.UBoot != nil {
		t.Errorf("qemu-virt has u-boot blobs: %+v", virt.UBoot)
	}
	if virt.Console != "ttyAMA0,115200" || virt.Arch != pine.Arch {
		t.Errorf("qemu-virt console %q arch %q", virt.Console, virt.Arch)
	}
	if virt.QEMU == nil || strings.Join(virt.QEMU.Args, " ") != "-M virt -cpu cortex-a53" {
		t.Errorf("qemu-virt qemu = %+v", virt.QEMU)
	}
}

func TestMatchInterface(t *testing.T) {
	tests := []struct {
		board, iface string
		want         bool
	}{
		{"pine64", "end0", true},
		{"pine64", "eth0", true},
		{"pine64", "wlan0", false},
		{"qemu-virt", "eth0", true},
		{"qemu-virt", "enp0s1", true},
		{"qemu-virt", "end0", false},
	}
	for _, tt := range tests {
		b, err := Load(tt.board)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.MatchInterface(tt.iface); got != tt.want {
			t.Errorf("%s.MatchInterface(%q) = %v, want %v", tt.board, tt.iface, got, tt.want)
		}
	}
}

func TestLoadUnknownListsKnown(t *testing.T) {
	for _, name := range []string{"x", "", "../pine64", "pine64.yaml", "PINE64"} {
		_, err := Load(name)
		want := "unknown board \"" + name + "\": known boards are pine64, qemu-virt"
		if err == nil || err.Error() != want {
			t.Errorf("Load(%q) = %v, want %q", name, err, want)
		}
	}
}

func TestAll(t *testing.T) {
	all, err := All()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range all {
		names = append(names, b.Name)
	}
	if got := strings.Join(names, ","); got != "pine64,qemu-virt" {
		t.Errorf("All() = %s", got)
	}
}

// No digest could be verified for an Armbian bookworm image, so the
// download must refuse rather than fetch something unchecked.
func TestBaseImageURLRefusesWithoutDigest(t *testing.T) {
	for _, name := range []string{"pine64", "qemu-virt"} {
		b, err := Load(name)
		if err != nil {
			t.Fatal(err)
		}
		if b.BaseImage.SHA256 != "" {
			continue // pinned: covered by TestBaseImageURLPinned
		}
		_, _, err = b.BaseImageURL()
		if !errors.Is(err, ErrNoPinnedDigest) {
			t.Fatalf("%s: BaseImageURL err = %v, want ErrNoPinnedDigest", name, err)
		}
		if !strings.Contains(err.Error(), "no pinned digest for board "+name+": pass --base-image") {
			t.Errorf("%s: error %q does not tell the user what to do", name, err)
		}
	}
}

func TestBaseImageURLPinned(t *testing.T) {
	b := &Board{Name: "x", BaseImage: BaseImage{
		Source:     "armbian",
		URLPattern: "https://example.invalid/Armbian_{version}_X_{kernel}.img.xz",
		Version:    "25.2.1", Kernel: "6.12.1",
		SHA256: strings.Repeat("ab", 32),
	}}
	url, sum, err := b.BaseImageURL()
	if err != nil {
		t.Fatal(err)
	}
	if url != "https://example.invalid/Armbian_25.2.1_X_6.12.1.img.xz" || sum != strings.Repeat("ab", 32) {
		t.Errorf("BaseImageURL = %s %s", url, sum)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
