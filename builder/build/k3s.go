package build

// Download is a file the builder fetches when the user gives no local
// copy: where from, and the SHA-256 it must have.
type Download struct {
	Version string
	URL     string
	SHA256  string
}

// k3sRelease is the pinned k3s arm64 binary. The digest is the one in
// k3s' own sha256sum-arm64.txt for this release, as pinned by three
// unrelated projects that checked it; bump version, URL and digest
// together. The airgap images archive is not pinned: no digest for it
// could be verified, so without --k3s-images the nodes pull k3s' images
// from the internet at first start, as a plain k3s install does.
func k3sRelease() Download {
	return Download{
		Version: "v1.36.4+k3s1",
		URL:     "https://github.com/k3s-io/k3s/releases/download/v1.36.4%2Bk3s1/k3s-arm64",
		SHA256:  "c920706346d5ad4e5cd3c7bf1bb09ce71ebe07fec829e513e40f1caf98aed8bb",
	}
}

// k3sImageExts are the archive kinds k3s imports from its images dir: it
// goes by the file name's extension.
func k3sImageExts() []string {
	return []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".tar.bz2", ".tar.lz4"}
}

// Where the files go in the root fs.
const (
	k3sBinaryPath = "/usr/local/bin/k3s"
	k3sImagesDir  = "/var/lib/rancher/k3s/agent/images"
	firstbootPath = "/usr/local/bin/homecloud-firstboot"
)
