package formats

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"

	"github.com/ringmaster/ringmaster/internal/fault"
)

type file struct {
	name string
	body []byte
}

func cpioOf(t testing.TB, files ...file) []byte {
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	for _, f := range files {
		if err := w.WriteHeader(&cpio.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		w.Write(f.body)
	}
	w.Close()
	return buf.Bytes()
}

func tarOf(t testing.TB, gz bool, files ...file) []byte {
	var buf bytes.Buffer
	var out = &buf
	var zw *gzip.Writer
	tw := tar.NewWriter(out)
	if gz {
		zw = gzip.NewWriter(out)
		tw = tar.NewWriter(zw)
	}
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o600, Size: int64(len(f.body))})
		tw.Write(f.body)
	}
	tw.Close()
	if zw != nil {
		zw.Close()
	}
	return buf.Bytes()
}

var desc = file{"sw-description", []byte(`software = { version = "2.0"; files: ( { filename = "x"; path = "/x"; } ); }`)}

func menderOf(t testing.TB, headerInfo string) []byte {
	return tarOf(t, false, file{"version", []byte(`{"format":"mender","version":3}`)}, file{"manifest", []byte("abc  data/0000.tar.gz\n")},
		file{"header.tar.gz", tarOf(t, true, file{"header-info", []byte(headerInfo)})}, file{"data/0000.tar.gz", tarOf(t, true)})
}

func TestCheck(t *testing.T) {
	good := []struct {
		format string
		body   []byte
		want   Info
	}{
		{SWU, cpioOf(t, desc, file{"sw-description.sig", []byte("sig")}, file{"x", []byte("image")}), Info{Format: SWU, Signed: true}},
		{SWU, cpioOf(t, desc, file{"x", []byte("image")}), Info{Format: SWU}},
		{RAUC, append([]byte("hsqs"), make([]byte, 100)...), Info{Format: RAUC}},
		{Mender, menderOf(t, `{"payloads":[{"type":"single-file"}],"artifact_provides":{"artifact_name":"release-2"},"artifact_depends":{"device_type":["gw-a","gw-b"]}}`),
			Info{Format: Mender, ArtifactName: "release-2", DeviceTypes: []string{"gw-a", "gw-b"}}},
	}
	for _, tc := range good {
		got, err := Check(tc.format, bytes.NewReader(tc.body))
		if err != nil || got.Format != tc.want.Format || got.Signed != tc.want.Signed || got.ArtifactName != tc.want.ArtifactName || !slices.Equal(got.DeviceTypes, tc.want.DeviceTypes) {
			t.Errorf("%s: %+v, %v; want %+v", tc.format, got, err, tc.want)
		}
	}
	bad := []struct {
		format string
		body   []byte
		want   string
	}{
		{SWU, []byte("just a file"), "not a cpio archive"},
		{SWU, cpioOf(t, file{"image.bin", []byte("x")}, desc), `first file is "image.bin"`},
		{SWU, cpioOf(t, desc), "nothing to install"},
		{SWU, cpioOf(t, file{"sw-description", []byte("hello")}, file{"x", nil}), "no software section"},
		{SWU, cpioOf(t, desc)[:150], "cut short"},
		{RAUC, []byte("PK\x03\x04zip"), "squashfs"},
		{Mender, []byte("not a tar"), "first file is version"},
		{Mender, tarOf(t, false, file{"version", []byte(`{"format":"mender","version":1}`)}), "version must be"},
		{Mender, menderOf(t, `{"payloads":[{"type":"x"}],"artifact_provides":{"artifact_name":"r"}}`), "no compatible device type"},
		{Mender, menderOf(t, `{"payloads":[{"type":"x"}],"artifact_depends":{"device_type":["a"]}}`), "no artifact_name"},
		{Mender, menderOf(t, `{`), "not JSON"},
		{Mender, tarOf(t, false, file{"version", []byte(`{"format":"mender","version":3}`)}, file{"header.tar.xz", nil}), "only gzip"},
		{"zip", nil, "unknown payload format"},
	}
	for _, tc := range bad {
		_, err := Check(tc.format, bytes.NewReader(tc.body))
		if !fault.Is(err, fault.Invalid) || !strings.Contains(fault.Message(err), tc.want) {
			t.Errorf("%s %.20q: %v; want an invalid error mentioning %q", tc.format, tc.body, err, tc.want)
		}
	}
}

func TestValidateDeclaration(t *testing.T) {
	if err := ValidateDeclaration("formats", map[string]string{"ddi": "swu", "mender": "mender"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []map[string]string{{"omaha": "swu"}, {"ddi": "mender"}, {"mender": ""}} {
		if err := ValidateDeclaration("formats", m); !fault.Is(err, fault.Invalid) {
			t.Errorf("%v: %v", m, err)
		}
	}
}

// TestCheckMenderArtifactTool reads an artifact made by mender-artifact
// itself, when it is installed (.ci/run installs it).
func TestCheckMenderArtifactTool(t *testing.T) {
	tool, err := exec.LookPath("mender-artifact")
	if err != nil {
		if os.Getenv("RINGMASTER_REQUIRE_AGENTS") == "1" {
			t.Fatal("mender-artifact is required (RINGMASTER_REQUIRE_AGENTS=1): apt-get install mender-artifact")
		}
		t.Skip("SKIPPED: mender-artifact not found; apt-get install mender-artifact (.ci/run does)")
	}
	dir := t.TempDir()
	payload, out := filepath.Join(dir, "app.conf"), filepath.Join(dir, "release.mender")
	os.WriteFile(payload, []byte("setting = 2\n"), 0o600)
	if b, err := exec.Command(tool, "write", "module-image", "-T", "single-file", "-n", "release-2", "-t", "gw-a", "-t", "gw-b",
		"-o", out, "-f", payload).CombinedOutput(); err != nil {
		t.Fatalf("mender-artifact: %v\n%s", err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := Check(Mender, f)
	if err != nil || info.ArtifactName != "release-2" || !slices.Equal(info.DeviceTypes, []string{"gw-a", "gw-b"}) {
		t.Fatalf("%+v, %v", info, err)
	}
}

// FuzzCheck: any bytes are a payload of each format or an Invalid error,
// never a panic.
func FuzzCheck(f *testing.F) {
	f.Add(cpioOf(f, desc, file{"x", []byte("image")}))
	f.Add(menderOf(f, `{"payloads":[{"type":"x"}],"artifact_provides":{"artifact_name":"r"},"artifact_depends":{"device_type":["a"]}}`))
	f.Add([]byte("hsqs"))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, format := range []string{SWU, RAUC, Mender} {
			info, err := Check(format, bytes.NewReader(body))
			if err != nil && !fault.Is(err, fault.Invalid) {
				t.Fatalf("%s: %v", format, err)
			}
			if err == nil && info.Format != format {
				t.Fatalf("%s: %+v", format, info)
			}
		}
	})
}
