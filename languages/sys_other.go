//go:build !linux

package languages

import (
	"context"
	"errors"
	"os/exec"
)

var errNotLinux = errors.New("building language images needs Linux (debootstrap, chroot)")

func killGroupOnCancel(*exec.Cmd) {}

func lockDir(context.Context, string, func(string)) (func(), error) { return nil, errNotLinux }

func unmountUnder(string) error { return nil }
