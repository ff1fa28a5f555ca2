// Package httpapi holds what every Ringmaster HTTP surface shares: RFC 9457
// problem responses with a stable type per error kind, size-limited JSON
// decoding, request ids, access logs, Prometheus metrics and panic recovery.
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/ringmaster/ringmaster/internal/fault"
)

// ProblemTypePrefix starts every problem type; the kind follows
// ("urn:ringmaster:problem:not-found").
const ProblemTypePrefix = "urn:ringmaster:problem:"

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	Instance  string `json:"instance,omitempty"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

var statusOf = map[fault.Kind]int{
	fault.Invalid:      http.StatusBadRequest,
	fault.NotFound:     http.StatusNotFound,
	fault.Conflict:     http.StatusConflict,
	fault.Forbidden:    http.StatusForbidden,
	fault.Unauthorized: http.StatusUnauthorized,
	fault.TooLarge:     http.StatusRequestEntityTooLarge,
	fault.Unavailable:  http.StatusServiceUnavailable,
	fault.RateLimited:  http.StatusTooManyRequests,
	fault.Internal:     http.StatusInternalServerError,
}

// Status returns the HTTP status for an error's kind.
func Status(err error) int { return statusOf[fault.KindOf(err)] }

// WriteError answers with a problem document for err. Internal causes are
// logged (with the request id), never shown.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	kind := fault.KindOf(err)
	clientGone := errors.Is(err, context.Canceled) && r.Context().Err() != nil
	if errors.Is(err, context.Canceled) {
		kind = fault.Unavailable
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// A deadline the server set (admin_timeout): say so, not "internal".
		if cause := context.Cause(r.Context()); cause != nil && fault.KindOf(cause) != fault.Internal {
			err = cause
		}
		kind = fault.Unavailable
	}
	status := statusOf[kind]
	p := Problem{
		Type: ProblemTypePrefix + string(kind), Title: http.StatusText(status), Status: status,
		Detail: fault.Message(err), Instance: r.URL.Path, RequestID: RequestID(r.Context()),
	}
	var fe *fault.Error
	if errors.As(err, &fe) {
		p.Field = fe.Field
	}
	if clientGone {
		Logger(r.Context()).Debug("client went away", "err", err)
	} else if status >= 500 {
		Logger(r.Context()).Error("request failed", "status", status, "err", err)
	} else {
		Logger(r.Context()).Info("request refused", "status", status, "err", err)
	}
	if kind == fault.Unauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ringmaster"`)
	}
	body, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding failed", http.StatusInternalServerError)
		return
	}
	WriteJSONBytes(w, status, append(body, '\n'))
}

// WriteJSONBytes writes body, JSON already encoded (ending in a newline,
// as WriteJSON's do), with status.
func WriteJSONBytes(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// DecodeJSON reads a JSON request body of at most limit bytes into dst.
// Strict decoding (for admin requests) rejects unknown fields, so a typo is
// an error rather than a silently ignored setting; device requests are
// lenient so older servers accept newer devices.
func DecodeJSON(r *http.Request, dst any, limit int64, strict bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && mt != "text/json") {
			return fault.E(fault.Invalid, "Content-Type must be application/json, not %q", ct)
		}
	}
	return DecodeDeviceJSON(r, dst, limit, strict)
}

// DecodeDeviceJSON is DecodeJSON for the device plane, which reads every
// body as JSON whatever its Content-Type says: device agents and curl -d
// send JSON labelled as a form, and check-ins and events have always taken
// it. The body is still parsed strictly as JSON.
func DecodeDeviceJSON(r *http.Request, dst any, limit int64, strict bool) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return BodyError(err)
	}
	if int64(len(body)) > limit {
		return fault.E(fault.TooLarge, "request body is larger than %d bytes", limit)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return fault.E(fault.Invalid, "request body is empty; expected a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(dst); err != nil {
		return fault.E(fault.Invalid, "request body is not valid: %s", describeJSONError(err))
	}
	if dec.More() {
		return fault.E(fault.Invalid, "request body has data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("JSON syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q must be %s, not %s", te.Field, te.Type, te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "JSON ends too early"
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg // "json: unknown field \"x\"" and the like
}

type ctxKey struct{}

// requestInfo travels in the request context. The request-scoped logger is
// made only when something is logged: most check-ins log nothing.
type requestInfo struct {
	id  string
	log *slog.Logger
}

// RequestID returns the request's id.
func RequestID(ctx context.Context) string {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri.id
	}
	return ""
}

// Logger returns the request-scoped logger (with the request id).
func Logger(ctx context.Context) *slog.Logger {
	if ri, ok := ctx.Value(ctxKey{}).(*requestInfo); ok {
		return ri.log.With("request_id", ri.id)
	}
	return slog.Default()
}

// requestIDs makes request ids: a random per-process prefix and a counter,
// unique without a random read per request.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (g *requestIDs) next() string {
	var buf [32]byte
	b := append(buf[:0], g.prefix...)
	return string(strconv.AppendUint(b, g.n.Add(1), 10))
}

// statusCodes holds the text of every HTTP status code, so metrics labels
// cost no allocation.
var statusCodes = func() (t [600]string) {
	for i := range t {
		t[i] = strconv.Itoa(i)
	}
	return t
}()

func codeLabel(status int) string {
	if status >= 0 && status < len(statusCodes) {
		return statusCodes[status]
	}
	return strconv.Itoa(status)
}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Metrics are the per-route request metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers request metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringmaster_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ringmaster_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10, 60},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Middleware wraps a ServeMux: request ids, panic recovery, access logs and
// metrics labelled by the matched route pattern. Check-ins are not
// access-logged one by one (they are counted); set quiet for such routes.
func Middleware(next http.Handler, log *slog.Logger, m *Metrics, quiet func(pattern string) bool) http.Handler {
	ids := newRequestIDs()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if id == "" || !requestIDRE.MatchString(id) {
			id = ids.next()
		}
		w.Header()["X-Request-Id"] = []string{id}
		ri := &requestInfo{id: id, log: log}
		span := trace.SpanFromContext(r.Context())
		if sc := span.SpanContext(); sc.IsValid() {
			ri.log = log.With("trace_id", sc.TraceID().String())
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, ri))
		rec := &recorder{ResponseWriter: w}
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				Logger(r.Context()).Error("panic serving request", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if rec.status == 0 {
					WriteError(rec, r, errors.New("panic"))
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			if span.IsRecording() {
				span.SetName(route)
				span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", rec.status))
				if rec.status >= 500 {
					span.SetStatus(codes.Error, http.StatusText(rec.status))
				}
			}
			m.requests.WithLabelValues(route, r.Method, codeLabel(rec.status)).Inc()
			m.duration.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
			if quiet == nil || !quiet(r.Pattern) || rec.status >= 500 {
				Logger(r.Context()).Info("request", "method", r.Method, "path", r.URL.Path, "route", route, "status", rec.status,
					"bytes", rec.bytes, "duration_ms", float64(time.Since(start).Microseconds())/1000)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// NotFound answers unmatched paths with a problem document.
func NotFound(w http.ResponseWriter, r *http.Request) {
	WriteError(w, r, fault.E(fault.NotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
}
