package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{[]string{"boards"}, 0, []string{"pine64 ", "PINE A64-LTS", "qemu-virt "}, nil},
		{[]string{"-h"}, 0, nil, []string{"-board", "-nodes", "-ssh-key", "boards lists the boards"}},
		{[]string{"build", "-h"}, 0, nil, []string{"-base-image"}},
		{[]string{"frobnicate"}, 2, nil, []string{`unknown command "frobnicate"`}},
		{[]string{"--board", "pine64", "--nodes", "0"}, 2, nil, []string{"--nodes: 0: need at least 1 node", "--ssh-key"}},
		{[]string{"--bogus"}, 2, nil, []string{"flag provided but not defined: -bogus"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstderr:\n%s", code, tt.code, stderr.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}
