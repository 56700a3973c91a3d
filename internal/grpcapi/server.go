// Package grpcapi is the gRPC edge of the service: it authenticates callers,
// checks each method's role, translates requests into calls of the flows
// (package mfa) and their errors into gRPC statuses, and logs one line per
// call.
package grpcapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/mfa"
)

// DefaultMaxRequestBytes is the largest request accepted unless configured.
const DefaultMaxRequestBytes = 64 << 10

// Options configure the gRPC server.
type Options struct {
	Service *mfa.Service
	Callers Callers
	Logger  *slog.Logger
	// TLS credentials; nil serves plaintext (the caller of New has checked
	// that the address is loopback).
	TLS credentials.TransportCredentials
	// MaxRequestBytes caps the size of a request message; 0 means
	// DefaultMaxRequestBytes.
	MaxRequestBytes int
	// Metrics registers the RPC metrics; nil registers none.
	Metrics prometheus.Registerer
}

// Server is the gRPC server with its health service.
type Server struct {
	*grpc.Server
	Health *health.Server
}

// New builds the gRPC server and registers the services.
func New(o Options) *Server {
	if o.MaxRequestBytes == 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	l := newLogger(o.Logger)
	if o.Metrics != nil {
		o.Metrics.MustRegister(l.rpcs)
	}
	c := newCodec()
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(o.MaxRequestBytes),
		grpc.ForceServerCodecV2(c),
		// The logger is outermost: it sees every outcome, maps it with
		// toStatus and writes the call's one log line. withOrigin, once the
		// caller is known, tells the flows and the log who called, from
		// where (a request that did not decode is empty: no client).
		grpc.ChainUnaryInterceptor(l.unary, o.Callers.unaryAuth, withOrigin, c.checkDecoded),
		grpc.ChainStreamInterceptor(l.stream, o.Callers.streamAuth, c.checkDecodedStream),
		grpc.ConnectionTimeout(10 * time.Second),
	}
	if o.TLS != nil {
		opts = append(opts, grpc.Creds(o.TLS))
	}
	gs := grpc.NewServer(opts...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(gs, h)
	sfv1.RegisterSecondFactorServiceServer(gs, &portalAPI{svc: o.Service})
	sfv1.RegisterAdminServiceServer(gs, &adminAPI{svc: o.Service})
	h.SetServingStatus(sfv1.SecondFactorService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus(sfv1.AdminService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return &Server{Server: gs, Health: h}
}

// Shutdown marks the server not serving, then stops it gracefully, or at
// once when ctx ends first.
func (s *Server) Shutdown(ctx context.Context) {
	s.Health.Shutdown()
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
	}
}

type requestIDKey struct{}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// callRecord is what the interceptors inside the logger learn of a call
// for its log line: the caller, once authenticated (withOrigin).
type callRecord struct {
	caller string
}

type callRecordKey struct{}

// clientRequest is a request that carries the end user's client, as the
// portal saw it.
type clientRequest interface{ GetClient() *sfv1.ClientInfo }

// userRequest is a request, or a response, that names a user.
type userRequest interface{ GetUserId() string }

// verdictResponse is the response of a verification.
type verdictResponse interface{ GetVerdict() sfv1.Verdict }

// withOrigin is the unary interceptor, after authentication, that gives the
// flows the origin of the call for the audit trail (mfa.WithOrigin): the
// authenticated caller's name, the request id and, when the request carries
// one, the end user's client. It also gives the caller's name to the call's
// log line.
func withOrigin(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	o := mfa.Origin{RequestID: requestID(ctx)}
	if c, ok := CallerFrom(ctx); ok {
		o.Actor = c.Name
	}
	if r, ok := req.(clientRequest); ok {
		c := r.GetClient()
		o.ClientIP, o.UserAgent = c.GetIp(), c.GetUserAgent()
	}
	if rec, ok := ctx.Value(callRecordKey{}).(*callRecord); ok {
		rec.caller = o.Actor
	}
	return handler(mfa.WithOrigin(ctx, o), req)
}

func newRequestID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// logger writes one JSON line per call: method, code, duration, request id,
// caller and peer; the user (user_id) and the end user's IP address
// (client_ip) when the request names them, and the verdict of a
// verification; for a failed call, the rule that refused it (reason) and
// the whole error with its cause (error), which the caller never sees.
// Request and response bodies are otherwise never logged: they carry codes
// and secrets. It is the outermost interceptor, and the one that turns errors
// into statuses (toStatus), panics included.
type logger struct {
	log  *slog.Logger
	rpcs *prometheus.HistogramVec
}

func newLogger(log *slog.Logger) *logger {
	return &logger{log: log, rpcs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "secondfactor_grpc_request_duration_seconds",
		Help:    "Duration of gRPC calls by method and status code.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"method", "code"})}
}

func (l *logger) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	id := newRequestID()
	rec := &callRecord{}
	ctx = context.WithValue(context.WithValue(ctx, requestIDKey{}, id), callRecordKey{}, rec)
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
		if err != nil {
			resp = nil
		}
		err = l.done(ctx, info.FullMethod, id, start, err, callAttrs(rec, req, resp)...)
	}()
	return handler(ctx, req)
}

func (l *logger) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	start := time.Now()
	id := newRequestID()
	ctx := context.WithValue(ss.Context(), requestIDKey{}, id)
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
		err = l.done(ctx, info.FullMethod, id, start, err)
	}()
	return handler(srv, &idStream{ServerStream: ss, ctx: ctx})
}

// idStream is a server stream whose context carries the request id.
type idStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *idStream) Context() context.Context { return s.ctx }

// maxLoggedText is the most of a user id or an IP address a log line
// repeats from a request: no valid one is longer, and an invalid one is
// refused, but still logged, with the call.
const maxLoggedText = 128

// callAttrs are the log fields of a unary call that its record, request and
// response give: caller, user_id (from the request, else from the response:
// FinishWebAuthnLogin names the user only there), client_ip and verdict.
func callAttrs(rec *callRecord, req, resp any) []slog.Attr {
	var attrs []slog.Attr
	if rec.caller != "" {
		attrs = append(attrs, slog.String("caller", rec.caller))
	}
	var user string
	if r, ok := req.(userRequest); ok {
		user = r.GetUserId()
	}
	if r, ok := resp.(userRequest); ok && user == "" {
		user = r.GetUserId()
	}
	if user != "" {
		attrs = append(attrs, slog.String("user_id", truncate(user)))
	}
	if r, ok := req.(clientRequest); ok && r.GetClient().GetIp() != "" {
		attrs = append(attrs, slog.String("client_ip", truncate(r.GetClient().GetIp())))
	}
	if r, ok := resp.(verdictResponse); ok && r.GetVerdict() != sfv1.Verdict_VERDICT_UNSPECIFIED {
		attrs = append(attrs, slog.String("verdict", verdictName(r.GetVerdict())))
	}
	return attrs
}

// verdictName is the verdict as the log and the audit trail write it:
// "accepted", "rejected", "locked".
func verdictName(v sfv1.Verdict) string {
	return strings.ToLower(strings.TrimPrefix(v.String(), "VERDICT_"))
}

// truncate cuts s to maxLoggedText bytes, marking the cut.
func truncate(s string) string {
	if len(s) <= maxLoggedText {
		return s
	}
	return strings.ToValidUTF8(s[:maxLoggedText], "") + "…"
}

// done maps a call's error to the status the caller gets, logs the call
// with the fields call gives and returns the status as an error (nil for
// success).
func (l *logger) done(ctx context.Context, method, id string, start time.Time, err error, call ...slog.Attr) error {
	st := toStatus(err, id)
	code := st.Code()
	elapsed := time.Since(start)
	l.rpcs.WithLabelValues(method, code.String()).Observe(elapsed.Seconds())
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("duration", elapsed),
		slog.String("request_id", id),
	}
	attrs = append(attrs, call...)
	if p, ok := peer.FromContext(ctx); ok {
		attrs = append(attrs, slog.String("peer", p.Addr.String()))
	}
	if err != nil {
		if r := reasonOf(err); r != "" {
			attrs = append(attrs, slog.String("reason", r))
		}
		attrs = append(attrs, slog.String("error", err.Error()))
		var pe *panicError
		if errors.As(err, &pe) {
			attrs = append(attrs, slog.String("stack", string(pe.stack)))
		}
	}
	level := slog.LevelInfo
	switch code {
	case codes.Internal, codes.Unknown, codes.Unavailable, codes.DataLoss:
		level = slog.LevelError
	}
	l.log.LogAttrs(ctx, level, "rpc", attrs...)
	return st.Err()
}
