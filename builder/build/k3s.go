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
// together, with k3sImagesRelease.
func k3sRelease() Download {
	return Download{
		Version: "v1.36.4+k3s1",
		URL:     "https://github.com/k3s-io/k3s/releases/download/v1.36.4%2Bk3s1/k3s-arm64",
		SHA256:  "c920706346d5ad4e5cd3c7bf1bb09ce71ebe07fec829e513e40f1caf98aed8bb",
	}
}

// k3sImagesRelease is the pinned airgap images archive of the same k3s
// release: baked into the images, k3s imports it at first start instead
// of pulling its system images (pause, coredns, traefik, …) from the
// internet. Its digest (175402374 bytes) is pinned alike by two
// unrelated projects, evilsysadmin/chess-studio
// (infra/oci/k3s/versions.env, with the size) and
// tonymarkel/oci-self-service-benchmarks (app/k3s_runtime.py); the size
// matches the 167.3 MiB of the release's asset list.
func k3sImagesRelease() Download {
	return Download{
		Version: "v1.36.4+k3s1",
		URL:     "https://github.com/k3s-io/k3s/releases/download/v1.36.4%2Bk3s1/k3s-airgap-images-arm64.tar.zst",
		SHA256:  "9d3c4c2197bcf857ca17633aa393bad683cc982ddd408620f93036a3cca953b5",
	}
}

// k3sImageExts are the archive kinds k3s imports from its images dir: it
// goes by the file name's extension.
func k3sImageExts() []string {
	return []string{".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd", ".tar.bz2", ".tar.lz4"}
}

// k3sTools are the commands k3s' install script links to the k3s binary
// (it runs them as multi-call programs): the admin's `sudo kubectl` on a
// server works as on any k3s host.
func k3sTools() []string { return []string{"kubectl", "crictl", "ctr"} }

// Where the files go in the root fs.
const (
	k3sBinaryPath = "/usr/local/bin/k3s"
	k3sImagesDir  = "/var/lib/rancher/k3s/agent/images"
	firstbootPath = "/usr/local/bin/homecloud-firstboot"
)
