package server

import (
	"context"
	"os"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/kb-labs/sandbox"
)

// otlpWanted reports whether the standard OTEL_* variables ask for OTLP
// export: an endpoint is set, or OTEL_TRACES_EXPORTER names otlp.
func otlpWanted() bool {
	if v := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); v != "" {
		return strings.Contains(v, "otlp")
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// newTracerProvider always records spans (their ids go into the runs'
// execution contexts and results) and exports them over OTLP/HTTP only when
// the environment asks for it. The exporter reads OTEL_EXPORTER_OTLP_* itself.
func newTracerProvider(ctx context.Context) (*sdktrace.TracerProvider, error) {
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the name.
	if res, err := sdkresource.New(ctx, sdkresource.WithAttributes(attribute.String("service.name", "sandbox")),
		sdkresource.WithFromEnv(), sdkresource.WithTelemetrySDK()); err == nil {
		opts = append(opts, sdktrace.WithResource(res))
	}
	if otlpWanted() {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

var propagator = propagation.TraceContext{}

// engineSpans re-emits the engine's phase spans (setup, execute, collect)
// as OpenTelemetry children of the run span, with their own timestamps.
func engineSpans(ctx context.Context, tr trace.Tracer, spans []sandbox.Span) {
	for _, sp := range spans {
		_, s := tr.Start(ctx, "sandbox."+sp.Name, trace.WithTimestamp(sp.StartTime))
		for k, v := range sp.Attributes {
			switch x := v.(type) {
			case string:
				s.SetAttributes(attribute.String(k, x))
			case float64:
				s.SetAttributes(attribute.Float64(k, x))
			case int:
				s.SetAttributes(attribute.Int(k, x))
			case int64:
				s.SetAttributes(attribute.Int64(k, x))
			case bool:
				s.SetAttributes(attribute.Bool(k, x))
			}
		}
		s.End(trace.WithTimestamp(sp.EndTime))
	}
}
