package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/ringmaster/ringmaster/internal/delta"
)

// DeltasConfig configures RunDeltas.
type DeltasConfig struct {
	// Pairs are old/new files; empty builds one with BuildGoPair.
	Pairs [][2]string
	// Rounds repeats each measurement; the fastest round is reported.
	Rounds   int
	Progress func(msg string) `json:"-"`
}

// DeltaResult is one pair's figures.
type DeltaResult struct {
	Old      string `json:"old"`
	New      string `json:"new"`
	OldBytes int64  `json:"old_bytes"`
	NewBytes int64  `json:"new_bytes"`
	// DeltaBytes and DeltaShare: the delta, and its share of the new file.
	DeltaBytes int64   `json:"delta_bytes"`
	DeltaShare float64 `json:"delta_share"`
	// CompressedBytes and CompressedShare: the baseline, the new file
	// compressed alone at the same level (what a device would fetch
	// without a delta from a server that compressed payloads).
	CompressedBytes int64         `json:"compressed_bytes"`
	CompressedShare float64       `json:"compressed_share"`
	Generate        time.Duration `json:"generate_ns"`
	Compress        time.Duration `json:"compress_ns"`
	Apply           time.Duration `json:"apply_ns"`
	// GeneratePeakBytes and ApplyPeakBytes: the Go heap's peak in use
	// while making and applying the delta (sampled every millisecond).
	GeneratePeakBytes uint64 `json:"generate_peak_bytes"`
	ApplyPeakBytes    uint64 `json:"apply_peak_bytes"`
}

// DeltasReport is RunDeltas' outcome.
type DeltasReport struct {
	Rounds int           `json:"rounds"`
	Pairs  []DeltaResult `json:"pairs"`
}

// RunDeltas measures making and applying zstd patch-from deltas, as the
// pipeline and the SDK updater do, against compressing the new file alone.
func RunDeltas(ctx context.Context, cfg DeltasConfig) (*DeltasReport, error) {
	cfg.Rounds = max(cfg.Rounds, 1)
	if len(cfg.Pairs) == 0 {
		dir, err := os.MkdirTemp("", "ringmaster-bench-deltas-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		if cfg.Progress != nil {
			cfg.Progress("building two versions of a Go program (go build)")
		}
		old, new, err := BuildGoPair(ctx, dir)
		if err != nil {
			return nil, err
		}
		cfg.Pairs = [][2]string{{old, new}}
	}
	rep := &DeltasReport{Rounds: cfg.Rounds}
	for _, p := range cfg.Pairs {
		if cfg.Progress != nil {
			cfg.Progress(fmt.Sprintf("measuring %s -> %s", filepath.Base(p[0]), filepath.Base(p[1])))
		}
		r, err := measurePair(p[0], p[1], cfg.Rounds)
		if err != nil {
			return nil, fmt.Errorf("%s -> %s: %w", p[0], p[1], err)
		}
		rep.Pairs = append(rep.Pairs, r)
	}
	return rep, nil
}

func measurePair(oldPath, newPath string, rounds int) (DeltaResult, error) {
	r := DeltaResult{Old: oldPath, New: newPath}
	old, err := os.ReadFile(oldPath)
	if err != nil {
		return r, err
	}
	nw, err := os.ReadFile(newPath)
	if err != nil {
		return r, err
	}
	r.OldBytes, r.NewBytes = int64(len(old)), int64(len(nw))
	var d, compressed []byte
	for i := range rounds {
		var gen, app, comp time.Duration
		var genPeak, appPeak uint64
		gen, genPeak = timed(func() { d, err = delta.Make(old, nw) })
		if err != nil {
			return r, err
		}
		app, appPeak = timed(func() { _, err = delta.Apply(old, d, int64(len(nw)), sha256Hex(nw)) })
		if err != nil {
			return r, err
		}
		comp, _ = timed(func() { compressed, err = compressAlone(nw) })
		if err != nil {
			return r, err
		}
		if i == 0 || gen < r.Generate {
			r.Generate, r.GeneratePeakBytes = gen, genPeak
		}
		if i == 0 || app < r.Apply {
			r.Apply, r.ApplyPeakBytes = app, appPeak
		}
		if i == 0 || comp < r.Compress {
			r.Compress = comp
		}
	}
	r.DeltaBytes, r.CompressedBytes = int64(len(d)), int64(len(compressed))
	r.DeltaShare = float64(len(d)) / float64(len(nw))
	r.CompressedShare = float64(len(compressed)) / float64(len(nw))
	return r, nil
}

// compressAlone is the baseline: the new file compressed at the level
// deltas are made with, without the old file as history.
func compressAlone(b []byte) ([]byte, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil), nil
}

// timed runs fn after a GC and returns how long it took and the peak of
// the Go heap in use above what was in use before, sampled every ms.
func timed(fn func()) (time.Duration, uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > base && m.HeapInuse-base > peak.Load() {
				peak.Store(m.HeapInuse - base)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	fn()
	took := time.Since(start)
	close(stop)
	<-done
	return took, peak.Load()
}

// BuildGoPair writes two versions of a small Go service that differ as
// consecutive releases do (a changed function, a new one, new strings)
// and builds each with the go command into dir, returning the binaries'
// paths. It needs the go toolchain on PATH.
func BuildGoPair(ctx context.Context, dir string) (old, new string, err error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("building a binary pair needs the go command on PATH (or give pairs): %w", err)
	}
	src := func(v int) string {
		var b strings.Builder
		fmt.Fprintf(&b, `package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"text/template"
)

const release = "1.%d"

var page = template.Must(template.New("p").Parse("<h1>{{.}}</h1>"))

func status(w http.ResponseWriter, r *http.Request) {
	_ = json.NewEncoder(w).Encode(map[string]any{"release": release, "path": r.URL.Path})
}
`, v)
		for i := range 12 + v {
			fmt.Fprintf(&b, "\nfunc handler%d(w http.ResponseWriter, r *http.Request) {\n\tfmt.Fprintf(w, \"handler %d of release %%s: %%s\", release, r.URL.Query().Get(\"q%d\"))\n}\n", i, i*(v+1), i)
		}
		b.WriteString(`
func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/status", status)
`)
		for i := range 12 + v {
			fmt.Fprintf(&b, "\tmux.HandleFunc(\"/h%d\", handler%d)\n", i, i)
		}
		b.WriteString(`	slog.Info("starting", "release", release)
	_ = page.Execute(os.Stdout, release)
	srv := &http.Server{Addr: "127.0.0.1:0", Handler: mux, TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	if len(os.Args) > 1 {
		_ = srv.ListenAndServe()
	}
}
`)
		return b.String()
	}
	var out [2]string
	for i, v := range []int{0, 1} {
		pkg := filepath.Join(dir, fmt.Sprintf("src%d", v))
		if err := os.MkdirAll(pkg, 0o755); err != nil {
			return "", "", err
		}
		if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(src(v)), 0o644); err != nil {
			return "", "", err
		}
		if err := os.WriteFile(filepath.Join(pkg, "go.mod"), []byte("module example.com/svc\n\ngo 1.22\n"), 0o644); err != nil {
			return "", "", err
		}
		out[i] = filepath.Join(dir, fmt.Sprintf("svc-1.%d", v))
		cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-o", out[i], ".")
		cmd.Dir = pkg
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOWORK=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build: %v: %s", err, b)
		}
	}
	return out[0], out[1], nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
