// Package formats reads the payload formats that device agents install,
// to refuse at publish what would never install: SWUpdate's .swu (a cpio
// archive whose first file is sw-description), RAUC bundles (squashfs),
// and Mender artifacts (a tar of version, manifest and header). It reads
// headers only, never what it would have to unpack to run. It is pure.
package formats

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/cavaliergopher/cpio"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// Formats.
const (
	SWU    = "swu"    // SWUpdate image
	RAUC   = "raucb"  // RAUC bundle
	Mender = "mender" // Mender artifact
)

// Dialects maps each device protocol that needs a format of its own to
// the formats its agents install. Other dialects (native, Omaha) take any
// file.
var Dialects = map[string][]string{
	"ddi":    {SWU, RAUC},
	"mender": {Mender},
}

// ValidateDeclaration checks a product's formats: dialect → format.
func ValidateDeclaration(field string, m map[string]string) error {
	for _, d := range sortedKeys(m) {
		allowed, ok := Dialects[d]
		if !ok {
			return fault.Field(field, "%q is not a dialect that needs a format (%s)", d, strings.Join(sortedKeys(Dialects), ", "))
		}
		if !slices.Contains(allowed, m[d]) {
			return fault.Field(field+"."+d, "%q is not a format %s agents install (%s)", m[d], d, strings.Join(allowed, ", "))
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Info is what a payload's header says.
type Info struct {
	Format string
	// SWUpdate: whether sw-description is followed by its signature.
	Signed bool
	// Mender: the artifact's name and the device types it installs on.
	ArtifactName string
	DeviceTypes  []string
}

// Limits on what is read.
const (
	maxDescription = 1 << 20 // sw-description, a Mender header-info
	maxHeader      = 8 << 20 // a Mender header.tar.gz, compressed
)

// Check reads payload r of format f and says what it is, or why it would
// never install (an Invalid error).
func Check(f string, r io.Reader) (Info, error) {
	var info Info
	var err error
	switch f {
	case SWU:
		info, err = checkSWU(r)
	case RAUC:
		info, err = checkRAUC(r)
	case Mender:
		info, err = checkMender(r)
	default:
		return Info{}, fault.E(fault.Invalid, "unknown payload format %q", f)
	}
	if err != nil {
		return Info{}, fault.E(fault.Invalid, "not a %s: %s", names[f], err)
	}
	info.Format = f
	return info, nil
}

var names = map[string]string{SWU: "SWUpdate image (.swu)", RAUC: "RAUC bundle", Mender: "Mender artifact"}

// checkSWU: SWUpdate reads the first file of the cpio archive (newc or
// crc) as sw-description, and then its signature when it verifies images.
func checkSWU(r io.Reader) (Info, error) {
	cr := cpio.NewReader(r)
	h, err := cr.Next()
	if err != nil {
		return Info{}, fmt.Errorf("not a cpio archive in newc or crc format (%v)", err)
	}
	if h.Name != "sw-description" {
		return Info{}, fmt.Errorf("the first file is %q; SWUpdate needs sw-description first", clip(h.Name))
	}
	if h.Size <= 0 || h.Size > maxDescription {
		return Info{}, fmt.Errorf("sw-description is %d bytes (1 byte to %d)", h.Size, maxDescription)
	}
	desc, err := io.ReadAll(io.LimitReader(cr, h.Size))
	if err != nil || int64(len(desc)) != h.Size {
		return Info{}, fmt.Errorf("sw-description is cut short")
	}
	if !bytes.Contains(desc, []byte("software")) {
		return Info{}, fmt.Errorf("sw-description has no software section")
	}
	next, err := cr.Next()
	switch {
	case errors.Is(err, io.EOF):
		return Info{}, fmt.Errorf("the archive holds sw-description and nothing to install")
	case err != nil:
		return Info{}, fmt.Errorf("the archive is corrupt after sw-description (%v)", err)
	}
	return Info{Signed: next.Name == "sw-description.sig"}, nil
}

// checkRAUC: a RAUC bundle is a squashfs image (the signature follows it).
func checkRAUC(r io.Reader) (Info, error) {
	var magic [4]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != "hsqs" {
		return Info{}, fmt.Errorf("it does not start with a squashfs image")
	}
	return Info{}, nil
}

// checkMender: a Mender artifact (format version 2 or 3) is a tar whose
// first file is version, then the manifest (and its signature), then the
// header, whose header-info names the artifact and the device types it
// installs on.
func checkMender(r io.Reader) (Info, error) {
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil || h.Name != "version" {
		return Info{}, fmt.Errorf("not a tar whose first file is version")
	}
	var v struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(tr, 4096)).Decode(&v); err != nil || v.Format != "mender" || (v.Version != 2 && v.Version != 3) {
		return Info{}, fmt.Errorf(`version must be {"format": "mender", "version": 2 or 3}`)
	}
	for {
		h, err := tr.Next()
		if err != nil {
			return Info{}, fmt.Errorf("no header.tar.gz")
		}
		switch {
		case h.Name == "manifest" || strings.HasPrefix(h.Name, "manifest."):
			continue
		case h.Name == "header.tar.gz":
			return menderHeader(io.LimitReader(tr, maxHeader))
		case strings.HasPrefix(h.Name, "header.tar"):
			return Info{}, fmt.Errorf("%s: only gzip-compressed headers are read (mender-artifact write … --compression gzip, the default)", clip(h.Name))
		default:
			return Info{}, fmt.Errorf("%q comes before the header", clip(h.Name))
		}
	}
}

func menderHeader(r io.Reader) (Info, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return Info{}, fmt.Errorf("header.tar.gz is not gzip")
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil || h.Name != "header-info" {
		return Info{}, fmt.Errorf("the header does not start with header-info")
	}
	var hi struct {
		Payloads []struct {
			Type *string `json:"type"`
		} `json:"payloads"`
		Provides struct {
			Name string `json:"artifact_name"`
		} `json:"artifact_provides"`
		Depends struct {
			DeviceType []string `json:"device_type"`
		} `json:"artifact_depends"`
		// Format version 2.
		Name       string   `json:"artifact_name"`
		DeviceType []string `json:"device_types_compatible"`
	}
	if err := json.NewDecoder(io.LimitReader(tr, maxDescription)).Decode(&hi); err != nil {
		return Info{}, fmt.Errorf("header-info is not JSON (%v)", err)
	}
	info := Info{ArtifactName: hi.Provides.Name, DeviceTypes: hi.Depends.DeviceType}
	if info.ArtifactName == "" {
		info.ArtifactName, info.DeviceTypes = hi.Name, hi.DeviceType
	}
	switch {
	case info.ArtifactName == "":
		return Info{}, fmt.Errorf("header-info names no artifact_name")
	case len(info.DeviceTypes) == 0:
		return Info{}, fmt.Errorf("header-info names no compatible device type")
	case len(hi.Payloads) == 0:
		return Info{}, fmt.Errorf("header-info lists no payload")
	}
	return info, nil
}

func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
