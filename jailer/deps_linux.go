package jailer

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// QEMU loads these without ldd seeing them: its TCG accelerator is a module,
// and the microvm machine's firmware is a file.
var qemuExtras = []string{
	"/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so",
	"/usr/share/qemu/bios-microvm.bin",
	"/usr/share/qemu/qboot.rom",
	"/etc/ld.so.cache",
}

var (
	depsMu    sync.Mutex
	depsCache = map[string][]string{}
)

// binaryDeps lists the host files a binary needs inside a jail: its ldd
// dependencies, and for QEMU its modules and firmware with their own.
func binaryDeps(bin string) ([]string, error) {
	depsMu.Lock()
	defer depsMu.Unlock()
	if d, ok := depsCache[bin]; ok {
		return slices.Clone(d), nil // callers append to it: never to the cache
	}
	deps, err := ldd(bin)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(filepath.Base(bin), "qemu-system") {
		for _, x := range qemuExtras {
			if _, err := os.Stat(x); err != nil {
				continue
			}
			deps = append(deps, x)
			if strings.HasSuffix(x, ".so") {
				more, err := ldd(x)
				if err != nil {
					return nil, err
				}
				deps = append(deps, more...)
			}
		}
	}
	slices.Sort(deps)
	deps = slices.Compact(deps)
	depsCache[bin] = deps
	return slices.Clone(deps), nil
}

// ldd returns the absolute paths ldd prints for a binary.
func ldd(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil, nil // static: nothing to add
		}
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, bytes.TrimSpace(out))
	}
	return parseLdd(out), nil
}

// parseLdd reads lines like "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1
// (0x…)" and "/lib64/ld-linux-x86-64.so.2 (0x…)".
func parseLdd(out []byte) []string {
	var paths []string
	s := bufio.NewScanner(bytes.NewReader(out))
	for s.Scan() {
		for _, f := range strings.Fields(s.Text()) {
			if strings.HasPrefix(f, "/") {
				paths = append(paths, f)
				break
			}
		}
	}
	return paths
}
