package targeting

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/ringmaster/ringmaster/internal/fault"
)

func TestRules(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	dev := &Device{ID: "laptop-42", Attributes: map[string]string{"arch": "x64", "oem": "contoso", "ram_gb": "16"},
		Installed: map[string]string{"windows-11": "10.0.22631.4317", "agent": "1.2.0-rc.1"}}
	tests := []struct {
		rule string
		want bool
	}{
		{``, true},
		{`device.attributes.arch == "x64"`, true},
		{`device.attributes.arch == "x64" && version(device.installed["windows-11"]) >= version("10.0.22631")`, true},
		{`version(device.installed["windows-11"]) < version("10.0.22631.4317")`, false},
		{`version(device.installed["windows-11"]) <= version("10.0.22631.4317")`, true},
		{`version(device.installed["agent"]) < version("1.2.0")`, true}, // a pre-release is older
		{`version(device.installed["agent"]) == version("1.2.0-rc.1")`, true},
		{`version("1.2") == version("1.2.0")`, true},
		{`"windows-11" in device.installed`, true},
		{`device.id.startsWith("laptop-")`, true},
		{`int(device.attributes.ram_gb) >= 8`, true},
		{`device.attributes.exists(k, k == "oem")`, true},
		{`device.attributes.oem in ["fabrikam", "northwind"]`, false},
		{`has(device.attributes.gpu)`, false},
	}
	for _, tt := range tests {
		r, err := env.Compile(tt.rule)
		if err != nil {
			t.Errorf("Compile(%q): %v", tt.rule, err)
			continue
		}
		got, err := r.Match(dev)
		if err != nil || got != tt.want {
			t.Errorf("Match(%q) = %v, %v; want %v", tt.rule, got, err, tt.want)
		}
	}
	// A rule that fails at run time does not match, and says why.
	r, _ := env.Compile(`version(device.installed["macos"]) > version("1")`)
	if ok, err := r.Match(dev); ok || err == nil || !strings.Contains(err.Error(), "macos") {
		t.Errorf("missing key: %v, %v", ok, err)
	}
}

func TestCompileRejects(t *testing.T) {
	env, _ := NewEnv()
	for rule, want := range map[string]string{
		`device.attributes.arch ==`:   "does not compile",
		`device.attribtues.arch == 1`: "does not compile", // misspelled field: type error
		`device.attributes.arch == 1`: "does not compile", // string vs int
		`device.attributes.arch`:      "must be a boolean",
		`version("1") > "1"`:          "does not compile",
		`device.attributes.all(a, device.attributes.all(b, device.attributes.all(c, a + b + c != "")))`: "too expensive",
		strings.Repeat("true && ", 600) + "true":                                                        "longer than",
	} {
		_, err := env.Compile(rule)
		if !fault.Is(err, fault.Invalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Compile(%.50q) = %v; want Invalid mentioning %q", rule, err, want)
		}
	}
}

// TestBucketMonotonicAndStable: raising a percentage only adds devices, and
// the bucket is a pure function of (salt, device id) — the same in every
// process (the expected values are fixed, so a change of hash breaks this).
func TestBucketMonotonicAndStable(t *testing.T) {
	pcts := []float64{0, 0.5, 1, 5, 10, 25, 50, 99.9, 100}
	counts := make([]int, len(pcts))
	const n = 100_000
	for i := 0; i < n; i++ {
		b := Bucket("dep_salt", fmt.Sprintf("device-%d", i))
		prev := false
		for j, p := range pcts {
			in := InWave(b, p)
			if prev && !in {
				t.Fatalf("device %d is in at %v%% but not at %v%%", i, pcts[j-1], p)
			}
			if in {
				counts[j]++
			}
			prev = in
		}
	}
	for j, p := range pcts {
		want := float64(n) * p / 100
		sd := math.Sqrt(float64(n) * p / 100 * (1 - p/100))
		if math.Abs(float64(counts[j])-want) > 5*sd+1 {
			t.Errorf("%v%%: %d devices, want %.0f ± %.0f", p, counts[j], want, 5*sd)
		}
	}
	// Stable across processes and releases: pinned values.
	if got := Bucket("dep_06h1ke0eeeng29k1tc7xcnct84", "laptop-42"); got != pinnedBucket {
		t.Fatalf("Bucket changed: %d, pinned %d (changing it reshuffles every running rollout)", got, pinnedBucket)
	}
	if Bucket("a", "b") == Bucket("b", "a") || Bucket("salt1", "d") == Bucket("salt2", "d") {
		t.Fatal("salt does not change the order")
	}
}

const pinnedBucket = 362210

func BenchmarkRuleMatch(b *testing.B) {
	env, _ := NewEnv()
	r, err := env.Compile(`device.attributes.arch == "x64" && version(device.installed["windows-11"]) >= version("10.0.22631")`)
	if err != nil {
		b.Fatal(err)
	}
	dev := &Device{ID: "d", Attributes: map[string]string{"arch": "x64"}, Installed: map[string]string{"windows-11": "10.0.22631.4317"}}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if ok, err := r.Match(dev); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// TestRejectsIsSound: whenever the pre-filter rejects a device, the full
// rule does not match it.
func TestRejectsIsSound(t *testing.T) {
	env, _ := NewEnv()
	rules := map[string]int{ // rule -> number of necessary equalities found
		`device.attributes.oem == "contoso" && device.attributes.region == "eu"`:     2,
		`"contoso" == device.attributes["oem"] && int(device.attributes.ram_gb) > 8`: 1,
		`device.id == "d1" || device.attributes.oem == "contoso"`:                    0,
		`!(device.attributes.oem == "contoso")`:                                      0,
		`has(device.attributes.oem) && device.attributes.oem == "contoso"`:           1,
		`device.attributes.arch == "x64" && (device.attributes.oem == "a" || true)`:  1,
		`device.id == "d1"`: 1,
	}
	devs := []*Device{
		{ID: "d1", Attributes: map[string]string{"oem": "contoso", "region": "eu", "ram_gb": "16", "arch": "x64"}},
		{ID: "d2", Attributes: map[string]string{"oem": "fabrikam", "region": "eu", "ram_gb": "4"}},
		{ID: "d3", Attributes: map[string]string{}},
	}
	for src, n := range rules {
		r, err := env.Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.must) != n {
			t.Errorf("%s: %d necessary equalities, want %d", src, len(r.must), n)
		}
		for _, d := range devs {
			ok, _ := r.Match(d)
			if r.Rejects(d) && ok {
				t.Errorf("%s: rejects %s, which matches", src, d.ID)
			}
		}
	}
}
