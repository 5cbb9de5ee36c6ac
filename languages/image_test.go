package languages

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func mustLookup(t testing.TB, id string) Language {
	t.Helper()
	l, err := Lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// fakeImage writes a manifest and a layer file where Find looks for lang,
// and a base image file; it returns the layer's path.
func fakeImage(t testing.TB, dir string, lang Language, version string) string {
	t.Helper()
	r, err := (&Builder{Dir: dir}).recipe()
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(manifest{Language: lang.ID, Version: version, Key: r.key(lang), Packages: lang.Packages, Standalone: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, r.imageDir(lang), map[string]string{manifestFile: string(data), imageFile: "0123456789"})
	writeFiles(t, r.baseDir(), map[string]string{baseFile: "base"})
	return filepath.Join(r.imageDir(lang), imageFile)
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	py := mustLookup(t, "python3")
	_, err := Find(dir, py)
	if !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Find in an empty dir: %v, want ErrNotBuilt", err)
	}
	if !strings.Contains(err.Error(), "make images") || !strings.Contains(err.Error(), "microbox images build python3") {
		t.Errorf("error %q does not say how to build the image", err)
	}
	path := fakeImage(t, dir, py, "3.11.2")
	img, err := Find(dir, py)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "images", "base-"+mustRecipe(t, dir).baseKey, baseFile)
	want := Image{Language: "python3", Path: path, Base: base, Version: "3.11.2", Size: img.Size, BaseSize: img.BaseSize,
		Standalone: 1 << 20, Key: img.Key}
	if img != want || len(img.Key) != 16 || img.Size <= 0 || img.BaseSize <= 0 {
		t.Fatalf("Find = %+v, want %+v", img, want)
	}
	if _, err := Find(dir, mustLookup(t, "ruby")); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Find(ruby) = %v, want ErrNotBuilt", err)
	}

	// A changed recipe must not find the old image.
	py.Packages = append(py.Packages, "python3-numpy")
	if _, err := Find(dir, py); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Find with other packages = %v, want ErrNotBuilt", err)
	}
}

func mustRecipe(t testing.TB, dir string) recipe {
	t.Helper()
	r, err := (&Builder{Dir: dir}).recipe()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFindImageOf(t *testing.T) {
	dir := t.TempDir()
	cpp := mustLookup(t, "cpp-clang")
	if _, err := Find(dir, cpp); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Find(cpp-clang) before c-clang is built = %v, want ErrNotBuilt", err)
	}
	path := fakeImage(t, dir, mustLookup(t, "c-clang"), "14.0.6")
	img, err := Find(dir, cpp)
	if err != nil || img.Language != "cpp-clang" || img.Path != path || img.Version != "14.0.6" {
		t.Fatalf("Find(cpp-clang) = %+v, %v; want c-clang's image under cpp-clang's name", img, err)
	}
}

func TestFindWithoutBase(t *testing.T) {
	dir := t.TempDir()
	bash := mustLookup(t, "bash")
	fakeImage(t, dir, bash, "5.2.15")
	if err := os.Remove(mustRecipe(t, dir).baseImage()); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(dir, bash); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Find with a layer but no base = %v, want ErrNotBuilt", err)
	}
}

func TestFindWithoutImageFile(t *testing.T) {
	dir := t.TempDir()
	bash := mustLookup(t, "bash")
	if err := os.Remove(fakeImage(t, dir, bash, "5.2.15")); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(dir, bash); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Find with a manifest but no image = %v, want ErrNotBuilt", err)
	}
}

func TestBuilt(t *testing.T) {
	dir := t.TempDir()
	if imgs, err := Built(dir); err != nil || len(imgs) != 0 {
		t.Fatalf("Built(empty) = %v, %v", imgs, err)
	}
	fakeImage(t, dir, mustLookup(t, "ruby"), "3.1.2")
	fakeImage(t, dir, mustLookup(t, "bash"), "5.2.15")
	imgs, err := Built(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].Language != "bash" || imgs[1].Language != "ruby" {
		t.Fatalf("Built = %+v, want bash and ruby in that order", imgs)
	}
}

func TestKey(t *testing.T) {
	r := recipe{baseKey: "base1"}
	py := mustLookup(t, "python3")
	k := r.key(py)
	if len(k) != 16 {
		t.Fatalf("key %q is not 16 hex chars", k)
	}
	reordered := py
	reordered.Packages = []string{"python3"}
	if r.key(reordered) != k {
		t.Error("key changed without a recipe change")
	}
	more := py.clone()
	more.Packages = append(more.Packages, "python3-numpy")
	if r.key(more) == k {
		t.Error("key did not change when packages changed")
	}
	setup := py.clone()
	setup.Setup = "true"
	if r.key(setup) == k {
		t.Error("key did not change when the setup script changed")
	}
	if (recipe{baseKey: "base2"}).key(py) == k {
		t.Error("key did not change when the base changed")
	}
	b1, _ := (&Builder{Dir: "/x", Mirror: "http://a/debian"}).recipe()
	b2, _ := (&Builder{Dir: "/x", Mirror: "http://b/debian"}).recipe()
	b3, _ := (&Builder{Dir: "/x", Mirror: "http://a/debian", Suite: "trixie"}).recipe()
	if b1.baseKey == b2.baseKey || b1.baseKey == b3.baseKey {
		t.Error("base key ignores the mirror or the suite")
	}
}

func TestUsage(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"a": "x", "d/b": strings.Repeat("y", 5000)})
	used, inodes, err := usage(root)
	if err != nil {
		t.Fatal(err)
	}
	// root, a, d, d/b: 4 inodes; a takes 1 block, b 2 blocks.
	if inodes != 4 || used != 4*4096+3*4096 {
		t.Fatalf("usage = %d bytes, %d inodes; want %d, 4", used, inodes, 7*4096)
	}
}

func TestBuildNeedsRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as root: the non-root error cannot be observed")
	}
	_, err := (&Builder{Dir: t.TempDir()}).Build(context.Background(), []Language{mustLookup(t, "bash")})
	if err == nil || !strings.Contains(err.Error(), "needs root") {
		t.Fatalf("Build as non-root = %v, want a needs-root error", err)
	}
}

func TestBuildReturnsExistingWithoutWork(t *testing.T) {
	dir := t.TempDir()
	bash := mustLookup(t, "bash")
	fakeImage(t, dir, bash, "5.2.15")
	imgs, err := (&Builder{Dir: dir}).Build(context.Background(), []Language{bash})
	if err != nil || len(imgs) != 1 || imgs[0].Version != "5.2.15" {
		t.Fatalf("Build of an existing image = %+v, %v", imgs, err)
	}
}

// requiresImageBuild skips unless the caller asked for real image builds:
// they take minutes and need root and network (`make images` builds the
// real ones). Once asked, a missing tool is a failure, not a skip.
func requiresImageBuild(t testing.TB) {
	t.Helper()
	if os.Getenv("MICROBOX_IMAGE_BUILD_TEST") != "1" {
		t.Skip("set MICROBOX_IMAGE_BUILD_TEST=1 (as root) to build a real image")
	}
	if os.Geteuid() != 0 {
		t.Skip("building images needs root")
	}
	for _, bin := range []string{"debootstrap", "mkfs.ext4"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("MICROBOX_IMAGE_BUILD_TEST=1 but %s is missing: %v", bin, err)
		}
	}
}

func TestBuildRealImage(t *testing.T) {
	requiresImageBuild(t)
	dir := t.TempDir()
	bash := mustLookup(t, "bash")
	imgs, err := (&Builder{Dir: dir, Progress: testWriter{t}}).Build(t.Context(), []Language{bash})
	if err != nil {
		t.Fatal(err)
	}
	img := imgs[0]
	if img.Version == "" || img.BaseSize < 64<<20 || img.Standalone < img.BaseSize {
		t.Fatalf("image %+v: no version, or a base too small", img)
	}
	found, err := Find(dir, bash)
	if err != nil || found != img {
		t.Fatalf("Find after Build = %+v, %v; want %+v", found, err, img)
	}
	out, err := exec.Command("debugfs", "-R", "cat /etc/passwd", img.Base).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "box:x:1000:1000:box:/box:/bin/sh") {
		t.Errorf("base /etc/passwd lacks the box user:\n%s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "images", "*.tmp*")); len(m) != 0 {
		t.Errorf("temp dirs left behind: %q", m)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
