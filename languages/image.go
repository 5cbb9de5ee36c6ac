package languages

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"microbox/internal/cache"
)

// Image is a built language image.
type Image struct {
	Language string // language ID
	Path     string // absolute path of the ext4 image file
	Version  string // version read from the built image by running VersionCmd in it
	Size     int64  // bytes of the image file
	Key      string // recipe hash
}

// ErrNotBuilt is wrapped by Find when the image for a language's current
// recipe does not exist.
var ErrNotBuilt = errors.New("language image not built")

const (
	// recipeVersion is part of every key: bump it when the build steps
	// change in a way the other key parts do not capture.
	recipeVersion = "microbox-images-1"
	variant       = "minbase"

	imageFile    = "rootfs.ext4"
	manifestFile = "manifest.json"
	logFile      = "build.log"
)

// postScript runs in the chroot after the packages are installed. Its text
// is part of the image key, so editing it rebuilds every image.
const postScript = `set -e
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old \
	/usr/share/doc /usr/share/man /usr/share/info /usr/share/locale \
	/var/log/apt /var/log/dpkg.log /var/log/alternatives.log \
	/tmp/* /var/tmp/*
mkdir -p /box /tmp /proc /dev /sys
chmod 0755 /box /dev
chmod 1777 /tmp
chmod 0555 /proc /sys
grep -q '^box:' /etc/passwd || echo 'box:x:1000:1000:box:/box:/bin/sh' >> /etc/passwd
grep -q '^box:' /etc/group || echo 'box:x:1000:' >> /etc/group
rm -f /etc/resolv.conf
`

// mkfsOptions are the fixed mkfs.ext4 options (label, inode count, source
// and size are added per image); part of the key. 4 KiB blocks are forced:
// mke2fs would pick 1 KiB blocks for images under 512 MiB, and the size
// estimate in usage counts 4 KiB blocks.
var mkfsOptions = []string{"-q", "-F", "-b", "4096", "-O", "^has_journal", "-E", "root_owner=0:0"}

// manifest is written next to each image as manifest.json.
type manifest struct {
	Language     string    `json:"language"`
	Version      string    `json:"version"`
	Packages     []string  `json:"packages"`
	Key          string    `json:"key"`
	BaseKey      string    `json:"base_key"`
	Suite        string    `json:"suite"`
	Mirror       string    `json:"mirror"`
	Size         int64     `json:"size"`
	BuildSeconds float64   `json:"build_seconds"`
	BuiltAt      time.Time `json:"built_at"`
}

// recipe is everything a key is computed from, resolved once.
type recipe struct {
	dir     string // cache root
	mirror  string
	suite   string
	baseKey string
}

func (b *Builder) recipe() (recipe, error) {
	if b.Dir == "" {
		return recipe{}, errors.New("languages: cache dir is empty")
	}
	dir, err := filepath.Abs(b.Dir)
	if err != nil {
		return recipe{}, err
	}
	r := recipe{dir: dir, mirror: resolveMirror(b.Mirror, "/"), suite: b.Suite}
	if r.suite == "" {
		r.suite = DefaultSuite
	}
	r.baseKey = cache.Key(recipeVersion, r.suite, r.mirror, variant)
	return r, nil
}

func (r recipe) imagesDir() string { return filepath.Join(r.dir, "images") }

func (r recipe) baseDir() string {
	return filepath.Join(r.imagesDir(), "base-"+r.baseKey)
}

// key hashes the recipe of lang's image: the base, the sorted packages, the
// post-processing script, the version command and the mkfs options.
func (r recipe) key(lang Language) string {
	pkgs := slices.Clone(lang.Packages)
	slices.Sort(pkgs)
	return cache.Key(recipeVersion, r.baseKey, lang.ID,
		strings.Join(pkgs, " "), postScript, strings.Join(lang.VersionCmd, "\x00"),
		strings.Join(mkfsOptions, " "))
}

func (r recipe) imageDir(lang Language) string {
	return filepath.Join(r.imagesDir(), lang.ID+"-"+r.key(lang))
}

// Find returns the built image of lang's current recipe under dir, the
// cache root. The mirror is resolved as a Builder with an empty Mirror
// would. It wraps ErrNotBuilt when the image does not exist.
func Find(dir string, lang Language) (Image, error) {
	return (&Builder{Dir: dir}).find(lang)
}

// Built returns every catalog language whose current image exists under
// dir, sorted by language ID.
func Built(dir string) ([]Image, error) {
	var out []Image
	for _, l := range All() {
		img, err := Find(dir, l)
		if errors.Is(err, ErrNotBuilt) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

func (b *Builder) find(lang Language) (Image, error) {
	r, err := b.recipe()
	if err != nil {
		return Image{}, err
	}
	return r.find(lang)
}

func (r recipe) find(lang Language) (Image, error) {
	key := r.key(lang)
	dir := r.imageDir(lang)
	notBuilt := func() error {
		return fmt.Errorf("%w: %s (recipe %s, expected %s): run `make images` or `microbox images build %s`",
			ErrNotBuilt, lang.ID, key, dir, lang.ID)
	}
	data, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, notBuilt()
	}
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", lang.ID, err)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Image{}, fmt.Errorf("image %s: %s: %w", lang.ID, filepath.Join(dir, manifestFile), err)
	}
	if m.Language != lang.ID || m.Key != key {
		return Image{}, fmt.Errorf("image %s: manifest in %s is for %s/%s", lang.ID, dir, m.Language, m.Key)
	}
	path := filepath.Join(dir, imageFile)
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, notBuilt()
	}
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", lang.ID, err)
	}
	return Image{Language: lang.ID, Path: path, Version: m.Version, Size: st.Size(), Key: key}, nil
}
