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

// Image is a built language image: a layer holding what the language's
// packages add to the shared base, and that base. A VM gets both as
// read-only disks and the guest stacks the layer on the base with overlayfs,
// so every VM of every language reads the same base file.
type Image struct {
	Language string // ID of the language it was found for
	Path     string // absolute path of the language's layer (ext4)
	Base     string // absolute path of the shared base image (ext4) under it
	Version  string // version read from the built image by running VersionCmd in it; "" without one
	Size     int64  // bytes the layer takes on disk (allocated, not apparent)
	BaseSize int64  // bytes the base image takes on disk
	// Bytes and BaseBytes are the bytes of files and inodes (the measure
	// images are sized by) in the layer and in the base; Standalone the
	// same of the language's whole tree, base included: what each image
	// took before images were layered. Zero for images built before these
	// were recorded.
	Bytes, BaseBytes, Standalone int64
	Key                          string // recipe hash
}

// ErrNotBuilt is wrapped by Find when the image for a language's current
// recipe does not exist.
var ErrNotBuilt = errors.New("language image not built")

const (
	// recipeVersion is part of every key: bump it when the build steps
	// change in a way the other key parts do not capture.
	recipeVersion = "microbox-images-2"
	variant       = "minbase"

	imageFile    = "layer.ext4"
	baseFile     = "base.ext4"
	manifestFile = "manifest.json"
	logFile      = "build.log"
)

// postScript runs in the chroot of the base and, after its packages are
// installed, of every language. Its text is part of every key, so editing
// it rebuilds every image.
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
// mke2fs would pick 1 KiB blocks for small images, and the size estimate in
// usage counts 4 KiB blocks.
var mkfsOptions = []string{"-q", "-F", "-b", "4096", "-O", "^has_journal", "-E", "root_owner=0:0"}

// manifest is written next to each layer as manifest.json, and next to the
// base image.
type manifest struct {
	Language     string    `json:"language"` // "base" for the base
	Version      string    `json:"version,omitempty"`
	Packages     []string  `json:"packages,omitempty"`
	Key          string    `json:"key"`
	BaseKey      string    `json:"base_key,omitempty"`
	Suite        string    `json:"suite"`
	Mirror       string    `json:"mirror"`
	Size         int64     `json:"size"`                 // allocated bytes of the ext4 file
	Bytes        int64     `json:"bytes"`                // bytes of files and inodes in it (usage)
	Standalone   int64     `json:"standalone,omitempty"` // the same of the language's whole tree, base included
	BaseBytes    int64     `json:"base_bytes,omitempty"` // the base's Bytes, for a layer
	Layer        layerStat `json:"layer"`
	BuildSeconds float64   `json:"build_seconds"`
	BuiltAt      time.Time `json:"built_at"`
}

// layerStat counts what reduceToLayer did.
type layerStat struct {
	Kept      int `json:"kept"`      // entries left in the layer (new or changed)
	Removed   int `json:"removed"`   // entries identical in the base, removed
	Whiteouts int `json:"whiteouts"` // entries of the base the language removed
}

// recipe is everything a key is computed from, resolved once.
type recipe struct {
	dir     string // cache root
	mirror  string
	suite   string
	baseKey string // of the base tree and image
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
	r.baseKey = cache.Key(recipeVersion, r.suite, r.mirror, variant, postScript, strings.Join(mkfsOptions, " "))
	return r, nil
}

func (r recipe) imagesDir() string { return filepath.Join(r.dir, "images") }

// baseDir holds the base: rootfs/ (the tree every language is built from
// and compared with), base.ext4 and manifest.json.
func (r recipe) baseDir() string {
	return filepath.Join(r.imagesDir(), "base-"+r.baseKey)
}

func (r recipe) baseImage() string { return filepath.Join(r.baseDir(), baseFile) }

// key hashes the recipe of lang's layer: the base, the sorted packages, the
// setup script, the version command (the version is read at build time)
// and the layer format.
func (r recipe) key(lang Language) string {
	pkgs := slices.Clone(lang.Packages)
	slices.Sort(pkgs)
	return cache.Key(recipeVersion, r.baseKey, lang.ID,
		strings.Join(pkgs, " "), lang.Setup, strings.Join(lang.VersionCmd, "\x00"))
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
	if lang.ImageOf != "" {
		host, err := imageLanguage(lang)
		if err != nil {
			return Image{}, err
		}
		img, err := r.find(host)
		img.Language = lang.ID
		return img, err
	}
	key := r.key(lang)
	dir := r.imageDir(lang)
	notBuilt := func() error {
		return fmt.Errorf("%w: %s (recipe %s, expected %s): run `make images` or `microbox images build %s`",
			ErrNotBuilt, lang.ID, key, dir, lang.ID)
	}
	m, err := readManifest(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, notBuilt()
	}
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", lang.ID, err)
	}
	if m.Language != lang.ID || m.Key != key {
		return Image{}, fmt.Errorf("image %s: manifest in %s is for %s/%s", lang.ID, dir, m.Language, m.Key)
	}
	layer, err := diskSize(filepath.Join(dir, imageFile))
	if err == nil && layer == 0 {
		err = fs.ErrNotExist
	}
	var base int64
	if err == nil {
		base, err = diskSize(r.baseImage())
	}
	if errors.Is(err, fs.ErrNotExist) {
		return Image{}, notBuilt()
	}
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", lang.ID, err)
	}
	return Image{Language: lang.ID, Path: filepath.Join(dir, imageFile), Base: r.baseImage(), Version: m.Version,
		Size: layer, BaseSize: base, Bytes: m.Bytes, BaseBytes: m.BaseBytes, Standalone: m.Standalone, Key: key}, nil
}

// readManifest reads dir/manifest.json; a missing one wraps fs.ErrNotExist.
func readManifest(dir string) (manifest, error) {
	var m manifest
	path := filepath.Join(dir, manifestFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// imageLanguage is the language whose image lang runs in: lang itself, or
// the one it names in ImageOf.
func imageLanguage(lang Language) (Language, error) {
	if lang.ImageOf == "" {
		return lang, nil
	}
	host, err := Lookup(lang.ImageOf)
	if err != nil {
		return Language{}, fmt.Errorf("%s runs in the image of %w", lang.ID, err)
	}
	if host.ImageOf != "" {
		return Language{}, fmt.Errorf("%s runs in the image of %s, which runs in another's", lang.ID, host.ID)
	}
	return host, nil
}
