package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args        []string
		wantForward []int
		wantErr     string
	}{
		{args: nil, wantForward: []int{22}},
		{args: []string{"-forward", "22, 6443,"}, wantForward: []int{22, 6443}},
		{args: []string{"-forward", ""}, wantForward: nil},
		{args: []string{"-forward", "22,ssh"}, wantErr: `"ssh" is not a TCP port`},
		{args: []string{"-forward", "70000"}, wantErr: `"70000" is not a TCP port`},
		{args: []string{"out/"}, wantErr: "-images DIR"},
		{args: []string{"-check"}, wantErr: "-check needs -ssh-key"},
		{args: []string{"-check", "-ssh-key", "id"}, wantForward: []int{22}},
		{args: []string{"-dhcp", "10.1.2.3"}, wantErr: "-dhcp"},
		{args: []string{"-dhcp", "fd00::1/64"}, wantErr: "-dhcp"},
		{args: []string{"-dhcp", "10.1.2.3/30"}, wantErr: "-dhcp"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parse(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.dhcp.IsValid() {
				t.Errorf("DHCP %s on by default, want off (the boot test's images are static)", o.dhcp)
			}
			if !slices.Equal(o.forward, tt.wantForward) {
				t.Errorf("forward = %v, want %v", o.forward, tt.wantForward)
			}
		})
	}
}

func TestParseDHCP(t *testing.T) {
	o, err := parse([]string{"-dhcp", "192.168.50.1/24"}, io.Discard)
	if err != nil || o.dhcp.String() != "192.168.50.1/24" || o.pool.String() != "192.168.50.100" {
		t.Fatalf("-dhcp 192.168.50.1/24: %+v, %v", o, err)
	}
	if o, err = parse([]string{"-dhcp", "off"}, io.Discard); err != nil || o.dhcp.IsValid() {
		t.Fatalf("-dhcp off: dhcp %v, err %v", o.dhcp, err)
	}
}
