package hostileagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"microbox/internal/leakcheck"
	"microbox/internal/vmtest"
	"microbox/languages"
	"microbox/sandbox/protocol"
	"microbox/vmm"
)

// The cache disk fills while a language image is built: MICROBOX_CACHE on
// a tmpfs sized against the base so that a known step runs out of space,
// whatever apt would download (the languages have no packages). The build
// fails with a BuildError that names the step and says "no space left on
// device" on its first line, the one `microbox images build` prints; no
// image, whole or partial, is left, and the space is given back. Once the
// tmpfs is remounted larger, the same language builds, and a VM boots on
// it and reads the file its Setup wrote.
func TestCacheDiskFullWhileBuildingImage(t *testing.T) {
	// The base every catalog image is built on. Its dir is named by the
	// recipe's key (mirror, suite, scripts), which a Builder on another
	// cache dir with the same settings computes alike, so the tmpfs gets
	// it by a read-only bind mount, outside its budget: no debootstrap.
	// Only the last check boots a VM, and requires what that needs.
	baseDir := filepath.Dir(vmtest.RequireBuiltImage(t, "bash").Base)
	var bm struct{ Bytes int64 }
	data, err := os.ReadFile(filepath.Join(baseDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &bm); err != nil || bm.Bytes <= 0 {
		t.Fatalf("base manifest: bytes %d, %v", bm.Bytes, err)
	}
	// bm.Bytes counts a 4 KiB block per entry and rounds every file up to
	// blocks: more than the copy of the base tree takes on a tmpfs.
	base := bm.Bytes
	before, beforeFDs := leakcheck.Take(), leakcheck.FDs()
	t.Cleanup(func() { leakcheck.CheckAfter(t, before, beforeFDs) })

	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		step string // the step that must fail
		size int64  // of the tmpfs
		// setup is the language's Setup; it writes /marker last.
		setup string
	}{
		// The base tree itself does not fit.
		{"copy", "copy base", 16 * mib, ""},
		// The copy fits, then Setup needs scratch space larger than the
		// whole disk (and frees it, so the rebuilt layer is small).
		{"setup", "setup", base + 32*mib,
			fmt.Sprintf("head -c %d /dev/zero > /scratch\nrm /scratch\n", base+32*mib)},
		// Setup's file fits in what the copy leaves (at least base+64M,
		// as the copy takes at most base), but not a second time: after
		// the layer is reduced, rootfs keeps it (base+48M) and mkfs needs
		// as much again, more than the base+16M left. Random, since
		// mkfs -d leaves zero blocks out of the image.
		{"mkfs", "mkfs.ext4", 2*base + 64*mib,
			fmt.Sprintf("head -c %d /dev/urandom > /big\n", base+48*mib)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lang := languages.Language{ID: "fault-" + tc.name, Setup: tc.setup + "echo " + tc.name + " > /marker\n"}
			cache := mountCache(t, baseDir, tc.size)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			var progress bytes.Buffer
			b := &languages.Builder{Dir: cache, Progress: &progress}
			start := time.Now()
			_, err := b.Build(ctx, []languages.Language{lang})
			t.Logf("failed build (%v):\n%s", time.Since(start).Round(time.Millisecond), progress.String())
			var be *languages.BuildError
			if !errors.As(err, &be) {
				t.Fatalf("Build on a full disk: %v, want a BuildError", err)
			}
			first, _, _ := strings.Cut(err.Error(), "\n")
			t.Logf("what `microbox images build` prints: %s", first)
			if be.Step != tc.step || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(first, "no space left on device") {
				t.Fatalf("step %q, ENOSPC %v, first line %q; want step %q and ENOSPC on the first line\n%v",
					be.Step, errors.Is(err, syscall.ENOSPC), first, tc.step, err)
			}
			checkNoImage(t, cache, lang)

			if err := unix.Mount("tmpfs", cache, "tmpfs", unix.MS_REMOUNT, fmt.Sprintf("size=%d", 2*tc.size+base+64*mib)); err != nil {
				t.Fatal(err)
			}
			progress.Reset()
			start = time.Now()
			imgs, err := b.Build(ctx, []languages.Language{lang})
			if err != nil {
				t.Fatalf("Build after the disk was grown: %v\n%s", err, progress.String())
			}
			t.Logf("rebuilt in %v", time.Since(start).Round(time.Millisecond))
			img, err := languages.Find(cache, lang)
			if err != nil || img.Path != imgs[0].Path {
				t.Fatalf("Find after the rebuild: %+v, %v; Build returned %s", img, err, imgs[0].Path)
			}
			if out, err := exec.Command("e2fsck", "-fn", img.Path).CombinedOutput(); err != nil {
				t.Fatalf("e2fsck -fn %s: %v\n%s", img.Path, err, out)
			}
			if got := catInVM(t, cache, img, "/marker"); got != tc.name+"\n" {
				t.Fatalf("/marker in the VM: %q, want %q", got, tc.name+"\n")
			}
		})
	}
}

// mountCache mounts a tmpfs of size bytes as a cache dir with baseDir (the
// built base of the real cache) bound read-only at the same place in it.
func mountCache(t *testing.T, baseDir string, size int64) string {
	t.Helper()
	cache := t.TempDir()
	if err := unix.Mount("tmpfs", cache, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(cache, unix.MNT_DETACH) })
	bound := filepath.Join(cache, "images", filepath.Base(baseDir))
	if err := os.MkdirAll(bound, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(baseDir, bound, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(bound, unix.MNT_DETACH) })
	if err := unix.Mount("", bound, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	return cache
}

// checkNoImage fails unless a failed build of lang left nothing in cache
// but the base and the locks (empty files, kept by design): no image dir,
// no temp dir, nothing Find or Built would return, and the disk's space
// back.
func checkNoImage(t *testing.T, cache string, lang languages.Language) {
	t.Helper()
	if img, err := languages.Find(cache, lang); !errors.Is(err, languages.ErrNotBuilt) {
		t.Errorf("Find after the failed build: %+v, %v; want ErrNotBuilt", img, err)
	}
	if built, err := languages.Built(cache); err != nil || len(built) > 0 {
		t.Errorf("Built after the failed build: %v, %v", built, err)
	}
	entries, err := os.ReadDir(filepath.Join(cache, "images"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		n := e.Name()
		if base := strings.HasPrefix(n, "base-") && !strings.Contains(n, "."); !base && !strings.HasSuffix(n, ".lock") {
			t.Errorf("left in the cache after the failed build: images/%s", n)
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(cache, &st); err != nil {
		t.Fatal(err)
	}
	if used := (st.Blocks - st.Bfree) * uint64(st.Bsize); used > 1<<20 {
		t.Errorf("%d KiB of the cache disk still used after the failed build", used>>10)
	}
}

// catInVM boots a VM on img and returns what a job that cats path prints:
// the guest mounts the layer over the base as the job's root, so this reads
// the image the way every job will.
func catInVM(t *testing.T, cache string, img languages.Image, path string) string {
	t.Helper()
	env := vmtest.Require(t)
	initramfs, err := vmm.BuildInitramfs(cache, env.Agent)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir(): its long, test-named path can push the VM's socket
	// paths past the 108 bytes a Unix socket address holds.
	runDir, err := os.MkdirTemp("", "vm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(runDir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := vmm.Start(ctx, vmm.Config{Kernel: env.Kernel, Initramfs: initramfs, Image: img.Path, Base: img.Base, RunDir: runDir})
	if err != nil {
		t.Fatalf("boot on the rebuilt image: %v", err)
	}
	defer vm.Close()
	job := protocol.Job{
		ID: "t", WorkDirSize: 16 << 20,
		Run: protocol.Step{Argv: []string{"cat", path}, Limits: protocol.Limits{
			CPUTime: 10 * time.Second, WallTime: 30 * time.Second, Memory: 64 << 20,
			Processes: 8, FileSize: 1 << 20, OpenFiles: 64, Stack: 8 << 20, Output: 1 << 20,
		}},
	}
	if err := vm.SetAgentDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := protocol.NewWriter(vm.Agent()).JSON(protocol.TypeJob, 0, job); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for {
		f, err := protocol.ReadFrame(vm.Agent(), protocol.MaxGuestPayload)
		if err != nil {
			t.Fatalf("read from the agent: %v\n%s", err, vm.Console())
		}
		switch f.Type {
		case protocol.TypeStdout:
			out.Write(f.Payload)
		case protocol.TypeStderr:
			t.Logf("stderr: %s", f.Payload)
		case protocol.TypeResult:
			var r protocol.Result
			if err := json.Unmarshal(f.Payload, &r); err != nil {
				t.Fatal(err)
			}
			if r.Run == nil || r.Run.ExitCode != 0 {
				t.Fatalf("cat %s: %s", path, f.Payload)
			}
			return out.String()
		default:
			t.Fatalf("%s frame: %s", f.Type, f.Payload)
		}
	}
}
