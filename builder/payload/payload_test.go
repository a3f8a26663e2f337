package payload

import (
	"bytes"
	"errors"
	"testing"
)

// Whether or not make payload ran, Firstboot either returns an ELF binary
// or says how to get one.
func TestFirstboot(t *testing.T) {
	b, err := Firstboot()
	if err != nil {
		if !errors.Is(err, ErrMissing) {
			t.Fatalf("Firstboot: %v, want ErrMissing or a binary", err)
		}
		t.Logf("no payload embedded: %v", err)
		return
	}
	if !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Fatalf("embedded %s is not an ELF binary (starts %q)", FirstbootName, b[:min(8, len(b))])
	}
}
