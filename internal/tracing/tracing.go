// Package tracing carries OpenTelemetry traces through Ringmaster: a span
// per HTTP request (device-plane requests sampled at a configurable
// ratio), a child span per durable job continuing the trace of the request
// or job that enqueued it, spans for the work worth seeing (signing, the
// controller's ticks, the gate's verdicts), and trace ids in the logs.
// With no endpoint configured nothing is set up and none of it costs
// anything.
package tracing

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Name is the instrumentation scope of Ringmaster's spans.
const Name = "github.com/ringmaster/ringmaster"

// Tracer is Ringmaster's tracer from the global provider.
func Tracer() trace.Tracer { return otel.Tracer(Name) }

// Start starts a span under ctx's, for work worth seeing in a trace.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return Tracer().Start(ctx, name, trace.WithAttributes(attrs...))
}

// End ends a span, marking it failed when err is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Setup exports traces over OTLP/HTTP to endpoint (a URL such as
// http://collector:4318) and makes that the global provider; device-plane
// requests without a sampled parent are kept at deviceRatio, everything
// else always. The returned function flushes and stops the exporter.
func Setup(ctx context.Context, endpoint string, deviceRatio float64, version string) (func(context.Context) error, error) {
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("otel_endpoint: %w", err)
	}
	host, _ := os.Hostname()
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", "ringmaster"), attribute.String("service.version", version),
		attribute.String("service.instance.id", fmt.Sprintf("%s-%d", host, os.Getpid()))))
	if err != nil {
		return nil, err
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res),
		sdktrace.WithSampler(Sampler(deviceRatio)))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return tp.Shutdown, nil
}

// Enabled reports whether spans go anywhere: an SDK provider is set.
func Enabled() bool {
	_, ok := otel.GetTracerProvider().(*sdktrace.TracerProvider)
	return ok
}

// Sampler keeps a sampled parent's children, deviceRatio of device-plane
// requests that start a trace, and every other trace.
func Sampler(deviceRatio float64) sdktrace.Sampler {
	return sdktrace.ParentBased(planeSampler{device: sdktrace.TraceIDRatioBased(deviceRatio)})
}

type planeSampler struct{ device sdktrace.Sampler }

func (s planeSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	for _, a := range p.Attributes {
		if a.Key == planeKey && a.Value.AsString() == "device" {
			return s.device.ShouldSample(p)
		}
	}
	return sdktrace.AlwaysSample().ShouldSample(p)
}

func (s planeSampler) Description() string {
	return "RingmasterPlanes{device:" + s.device.Description() + "}"
}

const planeKey = attribute.Key("ringmaster.plane")

// HTTP starts a server span per request, continuing a trace the caller
// sent (W3C traceparent); device reports whether a path is on the device
// plane, whose requests are sampled. The handler inside (httpapi's
// middleware) names the span by its route and records the status.
func HTTP(next http.Handler, device func(path string) bool) http.Handler {
	tracer := Tracer()
	prop := propagation.TraceContext{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plane := "admin"
		if device(r.URL.Path) {
			plane = "device"
		}
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(planeKey.String(plane), attribute.String("http.request.method", r.Method),
				attribute.String("url.path", r.URL.Path)))
		defer span.End()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// Jobs is River middleware: a job inserted under a span carries its trace
// context in the job's metadata, and the job runs in a span that is a
// child of it, so a request and the jobs it causes are one trace.
type Jobs struct {
	river.MiddlewareDefaults
}

var (
	_ rivertype.JobInsertMiddleware = (*Jobs)(nil)
	_ rivertype.WorkerMiddleware    = (*Jobs)(nil)
)

const metadataKey = "otel"

// InsertMany implements rivertype.JobInsertMiddleware.
func (*Jobs) InsertMany(ctx context.Context, params []*rivertype.JobInsertParams, doInner func(context.Context) ([]*rivertype.JobInsertResult, error)) ([]*rivertype.JobInsertResult, error) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		carrier := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, carrier)
		for _, p := range params {
			md := map[string]any{}
			if len(p.Metadata) > 0 {
				if err := json.Unmarshal(p.Metadata, &md); err != nil {
					continue // not an object: leave it as it is
				}
			}
			md[metadataKey] = map[string]string(carrier)
			if b, err := json.Marshal(md); err == nil {
				p.Metadata = b
			}
		}
	}
	return doInner(ctx)
}

// Work implements rivertype.WorkerMiddleware.
func (*Jobs) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	var md struct {
		OTel map[string]string `json:"otel"`
	}
	if len(job.Metadata) > 0 && json.Unmarshal(job.Metadata, &md) == nil && md.OTel != nil {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(md.OTel))
	}
	ctx, span := Tracer().Start(ctx, "job "+job.Kind, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("job.kind", job.Kind), attribute.Int64("job.id", job.ID), attribute.Int("job.attempt", job.Attempt)))
	err := doInner(ctx)
	End(span, err)
	return err
}

// Logs adds the trace and span ids of a record's context to it, so a log
// line leads to its trace.
func Logs(h slog.Handler) slog.Handler { return logs{h} }

type logs struct{ slog.Handler }

func (l logs) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return l.Handler.Handle(ctx, r)
}

func (l logs) WithAttrs(as []slog.Attr) slog.Handler { return logs{l.Handler.WithAttrs(as)} }
func (l logs) WithGroup(name string) slog.Handler    { return logs{l.Handler.WithGroup(name)} }

// DevicePath reports whether a path is on the device plane.
func DevicePath(path string) bool {
	return strings.HasPrefix(path, "/v1/device/") || strings.HasPrefix(path, "/v1/content/") || strings.HasPrefix(path, "/v1/tuf/") ||
		strings.HasPrefix(path, "/v1/update/")
}
