package grpcapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	sfv1 "github.com/secondfactor/secondfactor/api/secondfactor/v1"
	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/seal"
	"github.com/secondfactor/secondfactor/internal/secret"
)

// hidden is the text of every cause in these tests: it must reach the log
// and never the caller.
const hidden = "hidden-cause-detail"

var errHidden = errors.New(hidden)

func TestToStatus(t *testing.T) {
	const id = "0123456789abcdef"
	type result struct {
		Code    codes.Code
		Message string
	}
	wrapped := func(sentinel error) error {
		return fmt.Errorf("boltstore: confirm factor: %s: %w", hidden, sentinel)
	}
	refusal := func(kind error, r mfa.Reason, msg string) error {
		return &mfa.Error{Kind: kind, Reason: r, Message: msg, Cause: errHidden}
	}
	internalErr := result{codes.Internal, "internal error (request id " + id + ")"}
	tests := []struct {
		name string
		err  error
		want result
	}{
		{"nil", nil, result{codes.OK, ""}},
		{"field error", &mfa.FieldError{Field: "user_id", Problem: "is required"}, result{codes.InvalidArgument, "user_id: is required"}},
		{"wrapped field error", fmt.Errorf("create enrollment: %w", &mfa.FieldError{Field: "proof", Problem: "is unknown"}), result{codes.InvalidArgument, "proof: is unknown"}},

		// Every sentinel, bare from a store and wrapped with detail.
		{"ErrRefused", wrapped(mfa.ErrRefused), result{codes.FailedPrecondition, "refused"}},
		{"ErrNotFound", wrapped(mfa.ErrNotFound), result{codes.NotFound, "not found"}},
		{"ErrLocked", wrapped(mfa.ErrLocked), result{codes.ResourceExhausted, "too many failed attempts: retry later"}},
		{"ErrDuplicate", wrapped(mfa.ErrDuplicate), result{codes.AlreadyExists, "already registered"}},
		{"ErrConflict", wrapped(mfa.ErrConflict), result{codes.Aborted, "the record changed meanwhile: retry"}},
		{"ErrWrongCode", wrapped(mfa.ErrWrongCode), result{codes.FailedPrecondition, "the code is wrong, expired or already used"}},
		{"ErrUnavailable", wrapped(mfa.ErrUnavailable), result{codes.Unavailable, "the store is unavailable: retry (request id " + id + ")"}},

		// Errors of the flows: the kind chooses the code, the caller reads
		// the message, the cause stays behind.
		{"refusal with a reason", refusal(mfa.ErrRefused, mfa.ReasonPolicyStrongOnly, "a first factor needs PROOF_STRONG"), result{codes.FailedPrecondition, "a first factor needs PROOF_STRONG"}},
		{"wrapped refusal", fmt.Errorf("enrol: %w", refusal(mfa.ErrRefused, mfa.ReasonAlreadyEnrolled, "already has a factor")), result{codes.FailedPrecondition, "already has a factor"}},
		{"not found with a reason", refusal(mfa.ErrNotFound, mfa.ReasonSessionNotFound, "no session"), result{codes.NotFound, "no session"}},
		{"locked with a reason", refusal(mfa.ErrLocked, mfa.ReasonLocked, "retry after 30s"), result{codes.ResourceExhausted, "retry after 30s"}},
		{"duplicate with a reason", refusal(mfa.ErrDuplicate, mfa.ReasonCredentialRegistered, "already registered here"), result{codes.AlreadyExists, "already registered here"}},
		{"refusal whose cause is a store sentinel", refusal(mfa.ErrRefused, mfa.ReasonWrongActivationCode, "wrong activation code"), result{codes.FailedPrecondition, "wrong activation code"}},
		{"unavailable with its own message", refusal(mfa.ErrUnavailable, "", "redis down"), result{codes.Unavailable, "the store is unavailable: retry (request id " + id + ")"}},
		{"refusal of no known kind", refusal(errHidden, "", "what"), internalErr},

		// The edge's own refusals.
		{"unauthenticated", &edgeError{kind: errUnauthenticated, msg: "unknown bearer token"}, result{codes.Unauthenticated, "unknown bearer token"}},
		{"permission denied", &edgeError{kind: errPermissionDenied, msg: `caller "x" lacks role "admin"`}, result{codes.PermissionDenied, `caller "x" lacks role "admin"`}},
		{"undecodable", &edgeError{kind: errUndecodable, msg: "user_id: must be valid UTF-8", cause: errHidden}, result{codes.InvalidArgument, "user_id: must be valid UTF-8"}},

		// Anything else: only the request id.
		{"wrapped store error", fmt.Errorf("boltstore: user: %w", errHidden), internalErr},
		{"panic", &panicError{value: hidden}, internalErr},
		{"canceled", fmt.Errorf("store: %w", context.Canceled), result{codes.Canceled, "request canceled"}},
		{"deadline", fmt.Errorf("store: %w", context.DeadlineExceeded), result{codes.DeadlineExceeded, "deadline exceeded"}},
		{"grpc-go's own status", status.Error(codes.NotFound, "unknown service"), result{codes.NotFound, "unknown service"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := toStatus(tt.err, id)
			got := result{st.Code(), st.Message()}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("toStatus(%v) mismatch (-want +got):\n%s", tt.err, diff)
			}
		})
	}
}

// TestEveryKindMapped: each sentinel of mfa has its own code, not Internal.
func TestEveryKindMapped(t *testing.T) {
	for _, kind := range []error{mfa.ErrRefused, mfa.ErrNotFound, mfa.ErrLocked, mfa.ErrDuplicate, mfa.ErrConflict, mfa.ErrWrongCode, mfa.ErrUnavailable} {
		if c := toStatus(kind, "id").Code(); c == codes.Internal || c == codes.Unknown {
			t.Errorf("toStatus(%v) = %v, want a code of its own", kind, c)
		}
	}
}

// logBuffer collects slog JSON lines; the server writes them from its own
// goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines decodes the lines logged so far.
func (l *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func newLogBuffer() (*logBuffer, *slog.Logger) {
	lb := &logBuffer{}
	return lb, slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// logFields are the fields of a call's log line that these tests check.
type logFields struct {
	Level, Msg, Method, Code, Reason string
	HasStack                         bool
}

func fieldsOf(m map[string]any) logFields {
	s := func(k string) string { v, _ := m[k].(string); return v }
	_, stack := m["stack"]
	return logFields{Level: s("level"), Msg: s("msg"), Method: s("method"), Code: s("code"), Reason: s("reason"), HasStack: stack}
}

// TestCallLogLine runs the logging interceptor, the one that maps errors,
// on handlers that fail in each way, and reads its one line per call.
func TestCallLogLine(t *testing.T) {
	const method = "/secondfactor.v1.SecondFactorService/GetUser"
	tests := []struct {
		name      string
		handler   grpc.UnaryHandler
		want      logFields
		wantError string // the log line's error field; the cause's text is in it
	}{
		{"success", func(context.Context, any) (any, error) { return "ok", nil },
			logFields{Level: "INFO", Msg: "rpc", Method: method, Code: "OK"}, ""},
		{"refusal", func(context.Context, any) (any, error) {
			return nil, &mfa.Error{Kind: mfa.ErrRefused, Reason: mfa.ReasonNoFreshVerification, Message: "no fresh verification", Cause: errHidden}
		}, logFields{Level: "INFO", Msg: "rpc", Method: method, Code: "FailedPrecondition", Reason: "no-fresh-verification"}, "no fresh verification: " + hidden},
		{"wrapped store error", func(context.Context, any) (any, error) {
			return nil, fmt.Errorf("boltstore: user: %w", errHidden)
		}, logFields{Level: "ERROR", Msg: "rpc", Method: method, Code: "Internal"}, "boltstore: user: " + hidden},
		{"store unavailable", func(context.Context, any) (any, error) {
			return nil, fmt.Errorf("redisstore: user: %s: %w", hidden, mfa.ErrUnavailable)
		}, logFields{Level: "ERROR", Msg: "rpc", Method: method, Code: "Unavailable"}, "redisstore: user: " + hidden + ": store unavailable"},
		{"panic", func(context.Context, any) (any, error) { panic(hidden) },
			logFields{Level: "ERROR", Msg: "rpc", Method: method, Code: "Internal", HasStack: true}, "panic: " + hidden},
		{"unauthenticated", func(context.Context, any) (any, error) {
			return nil, &edgeError{kind: errUnauthenticated, reason: "unknown-bearer-token", msg: "unknown bearer token"}
		}, logFields{Level: "INFO", Msg: "rpc", Method: method, Code: "Unauthenticated", Reason: "unknown-bearer-token"}, "unknown bearer token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lb, log := newLogBuffer()
			l := newLogger(log)
			resp, err := l.unary(t.Context(), nil, &grpc.UnaryServerInfo{FullMethod: method}, tt.handler)
			lines := lb.lines(t)
			if len(lines) != 1 {
				t.Fatalf("logged %d lines, want 1: %v", len(lines), lines)
			}
			line := lines[0]
			if diff := cmp.Diff(tt.want, fieldsOf(line)); diff != "" {
				t.Errorf("log line mismatch (-want +got):\n%s", diff)
			}
			if got, _ := line["error"].(string); got != tt.wantError {
				t.Errorf("log line error = %q, want %q", got, tt.wantError)
			}
			id, _ := line["request_id"].(string)
			if len(id) != 16 {
				t.Errorf("log line request_id = %q, want 16 hex digits", id)
			}
			st := status.Convert(err)
			if st.Code().String() != tt.want.Code {
				t.Errorf("status %v, want %s", st.Code(), tt.want.Code)
			}
			if strings.Contains(st.Message(), hidden) {
				t.Errorf("the caller sees the cause: %q", st.Message())
			}
			if (st.Code() == codes.Internal || st.Code() == codes.Unavailable) && !strings.Contains(st.Message(), "request id "+id) {
				t.Errorf("status message %q lacks the request id %s of the log line", st.Message(), id)
			}
			if err != nil && resp != nil {
				t.Errorf("response %v with error %v", resp, err)
			}
		})
	}
}

// server is a real server on a loopback listener, on a bolt store, logging
// to a buffer.
type server struct {
	conn       *grpc.ClientConn
	closeStore func() error // at most once: boltstore's Close panics when called twice
	log        *logBuffer
}

const (
	testToken  = "portal-token-for-error-tests-0123456789"
	adminToken = "admin-token-for-error-tests-0123456789"
)

// startServer starts the server with a portal caller "portal" (testToken)
// and an admin caller "ops-admin" (adminToken); opts change the flows'
// options.
func startServer(t *testing.T, opts ...func(*mfa.Options)) *server {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "sf.db"))
	if err != nil {
		t.Fatal(err)
	}
	closeStore := sync.OnceValue(store.Close)
	t.Cleanup(func() {
		if err := closeStore(); err != nil {
			t.Error(err)
		}
	})
	ring, err := seal.NewRing([]seal.Key{{ID: "k1", Bytes: make([]byte, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	o := mfa.Options{Store: store, Ring: ring}
	for _, opt := range opts {
		opt(&o)
	}
	svc, err := mfa.New(o)
	if err != nil {
		t.Fatal(err)
	}
	lb, log := newLogBuffer()
	srv := New(Options{Service: svc, Logger: log, Callers: Callers{
		secret.Hash(testToken):  {Name: "portal", Roles: []Role{RolePortal}},
		secret.Hash(adminToken): {Name: "ops-admin", Roles: []Role{RoleAdmin}},
	}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	})
	return &server{conn: conn, closeStore: closeStore, log: lb}
}

// rawCodec sends the bytes it is given as they are, so that a test can put
// anything on the wire, and reads answers as bytes.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// field encodes one length-delimited protobuf field.
func field(num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

// TestUndecodableRequest sends bytes that do not decode as the method's
// request over a real connection: the caller gets InvalidArgument with a
// clear message, after authentication, and the call is logged.
func TestUndecodableRequest(t *testing.T) {
	const (
		getUser    = sfv1.SecondFactorService_GetUser_FullMethodName
		verifyTOTP = sfv1.SecondFactorService_VerifyTOTP_FullMethodName
		health     = "/grpc.health.v1.Health/Check"
	)
	// A mark of the server's codec forged by a client is an unknown field
	// like any other: the request is served.
	forged := concat(field(1, []byte("dr-martin")), field(19999, []byte("0123456789abcdef"+"forged\x00detail")))
	tests := []struct {
		name       string
		method     string
		body       []byte
		anonymous  bool
		wantCode   codes.Code
		wantMsg    string
		wantReason string
	}{
		{"invalid UTF-8 in a string field", getUser, field(1, []byte("dr-\xff")), false,
			codes.InvalidArgument, "user_id: must be valid UTF-8", "undecodable-request"},
		{"invalid UTF-8 in a nested message", verifyTOTP, concat(field(1, []byte("dr-martin")), field(2, []byte("123456")), field(3, field(2, []byte("Mozilla \xc3\x28")))), false,
			codes.InvalidArgument, "client.user_agent: must be valid UTF-8", "undecodable-request"},
		{"not protobuf", getUser, []byte{0xff, 0xff, 0xff, 0xff}, false,
			codes.InvalidArgument, "request: not a valid secondfactor.v1.GetUserRequest message", "undecodable-request"},
		{"truncated field", getUser, field(1, []byte("dr-martin"))[:5], false,
			codes.InvalidArgument, "request: not a valid secondfactor.v1.GetUserRequest message", "undecodable-request"},
		{"not protobuf, public method", health, []byte{0x0a, 0x05, 0x01}, true,
			codes.InvalidArgument, "request: not a valid grpc.health.v1.HealthCheckRequest message", "undecodable-request"},
		{"not protobuf, unknown caller", getUser, []byte{0xff, 0xff, 0xff, 0xff}, true,
			codes.Unauthenticated, "missing bearer token: send metadata 'authorization: Bearer <token>'", "missing-bearer-token"},
		{"a forged mark", getUser, forged, false, codes.OK, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t)
			opts := []grpc.CallOption{grpc.ForceCodecV2(rawCodec{})}
			if !tt.anonymous {
				opts = append(opts, grpc.PerRPCCredentials(bearer(testToken)))
			}
			body, out := tt.body, []byte(nil)
			err := s.conn.Invoke(t.Context(), tt.method, &body, &out, opts...)
			st := status.Convert(err)
			if st.Code() != tt.wantCode || st.Message() != tt.wantMsg {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			lines := s.log.lines(t)
			if len(lines) != 1 {
				t.Fatalf("logged %d lines, want 1: %v", len(lines), lines)
			}
			want := logFields{Level: "INFO", Msg: "rpc", Method: tt.method, Code: tt.wantCode.String(), Reason: tt.wantReason}
			if diff := cmp.Diff(want, fieldsOf(lines[0])); diff != "" {
				t.Errorf("log line mismatch (-want +got):\n%s", diff)
			}
			if id, _ := lines[0]["request_id"].(string); len(id) != 16 {
				t.Errorf("log line request_id = %q, want 16 hex digits", id)
			}
			if tt.wantReason == "undecodable-request" {
				// The log keeps protobuf's own words after the message.
				if e, _ := lines[0]["error"].(string); !strings.HasPrefix(e, tt.wantMsg+": ") || len(e) < len(tt.wantMsg)+10 {
					t.Errorf("log line error = %q, want the message then protobuf's error", e)
				}
			}
		})
	}
}

// TestUndecodableStreamMessage: the health Watch stream reads its request
// after the interceptors, through the same check.
func TestUndecodableStreamMessage(t *testing.T) {
	s := startServer(t)
	desc := &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true}
	cs, err := s.conn.NewStream(t.Context(), desc, "/grpc.health.v1.Health/Watch", grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	body := []byte{0xff, 0xff}
	if err := cs.SendMsg(&body); err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var out []byte
	err = cs.RecvMsg(&out)
	st := status.Convert(err)
	want := "request: not a valid grpc.health.v1.HealthCheckRequest message"
	if st.Code() != codes.InvalidArgument || st.Message() != want {
		t.Errorf("got %v %q, want InvalidArgument %q", st.Code(), st.Message(), want)
	}
}

// TestStoreFailureShowsOnlyRequestID: a real store error (the bolt file is
// closed under the server) reaches the caller as Internal with the request
// id alone; the log line has the same id and the store's words.
func TestStoreFailureShowsOnlyRequestID(t *testing.T) {
	s := startServer(t)
	if err := s.closeStore(); err != nil {
		t.Fatal(err)
	}
	client := sfv1.NewSecondFactorServiceClient(s.conn)
	_, err := client.GetUser(t.Context(), &sfv1.GetUserRequest{UserId: "dr-martin"}, grpc.PerRPCCredentials(bearer(testToken)))
	lines := s.log.lines(t)
	if len(lines) != 1 {
		t.Fatalf("logged %d lines, want 1: %v", len(lines), lines)
	}
	id, _ := lines[0]["request_id"].(string)
	st := status.Convert(err)
	if got, want := fmt.Sprint(st.Code(), " ", st.Message()), "Internal internal error (request id "+id+")"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if e, _ := lines[0]["error"].(string); !strings.Contains(e, "boltstore: user: database not open") {
		t.Errorf("log line error = %q, want the store's error", e)
	}
	if diff := cmp.Diff(logFields{Level: "ERROR", Msg: "rpc", Method: sfv1.SecondFactorService_GetUser_FullMethodName, Code: "Internal"}, fieldsOf(lines[0])); diff != "" {
		t.Errorf("log line mismatch (-want +got):\n%s", diff)
	}
}

// TestCodecMarshalsLikeProto: the server's codec writes what grpc-go's
// protobuf codec writes.
func TestCodecMarshalsLikeProto(t *testing.T) {
	c := newCodec()
	in := &sfv1.GetUserResponse{UserId: "dr-martin", Enrolled: true}
	data, err := c.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Free()
	out := &sfv1.GetUserResponse{}
	if err := c.Unmarshal(data, out); err != nil {
		t.Fatal(err)
	}
	if err := c.undecodable(out); err != nil {
		t.Fatalf("a good message is marked undecodable: %v", err)
	}
	if !proto.Equal(in, out) {
		t.Errorf("round trip = %v, want %v", out, in)
	}
}
