//go:build !linux

package languages

import (
	"context"
	"errors"
	"os"
	"os/exec"
)

var errNotLinux = errors.New("building language images needs Linux (debootstrap, chroot)")

func killGroupOnCancel(*exec.Cmd) {}

func lockDir(context.Context, string, func(string)) (func(), error) { return nil, errNotLinux }

func unmountUnder(string) error { return nil }

func tryLock(string) (func(), bool, error) { return nil, false, errNotLinux }

func diskSize(path string) (int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func reduceToLayer(string, string) (layerStat, error) { return layerStat{}, errNotLinux }

func mountProc(string) (func() error, error) { return nil, errNotLinux }

func diskFull(string) bool { return false }
