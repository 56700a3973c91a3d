package grpcapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the protobuf codec that codec wraps
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// codec is the server's message codec: grpc-go's protobuf codec, except for
// requests it cannot decode (bytes that are not protobuf, a string field
// that is not valid UTF-8).
//
// grpc-go (v1.85) turns any error of a codec's Unmarshal into INTERNAL with
// its own text ("grpc: failed to unmarshal the received message: ...") and
// writes that status at once; for a unary method the generated handler
// decodes before the interceptors run, so neither the authentication nor the
// log ever sees the call. So codec does not fail: it empties the message and
// marks it, and the checkDecoded interceptors, after authentication, turn
// the mark into an edge error that toStatus maps to InvalidArgument and the
// call's log line records.
type codec struct {
	proto encoding.CodecV2
	// nonce, random per server, opens every mark, so that no client can
	// forge one in a well-formed request.
	nonce []byte
}

var _ encoding.CodecV2 = (*codec)(nil)

// markField is the field number of the mark among the message's unknown
// fields: 19000 to 19999 are reserved for protobuf implementations, so no
// message of the API declares it.
const markField protowire.Number = 19999

func newCodec() *codec {
	nonce := make([]byte, 16)
	rand.Read(nonce)
	return &codec{proto: encoding.GetCodecV2("proto"), nonce: nonce}
}

// Name is the protobuf codec's, so the content type stays application/grpc.
func (c *codec) Name() string { return c.proto.Name() }

// Marshal is the protobuf codec's.
func (c *codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

// Unmarshal decodes a request with the protobuf codec; if that fails, it
// resets the message and marks it with what the caller and the log are to
// be told.
func (c *codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.proto.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	desc := m.ProtoReflect().Descriptor()
	msg := "request: not a valid " + string(desc.FullName()) + " message"
	if field, ok := invalidUTF8(desc, data.Materialize(), 0); ok {
		msg = field + ": must be valid UTF-8"
	}
	proto.Reset(m)
	payload := append(append(append([]byte(nil), c.nonce...), msg...), 0)
	payload = append(payload, strings.ReplaceAll(err.Error(), "\x00", "")...)
	mark := protowire.AppendTag(nil, markField, protowire.BytesType)
	m.ProtoReflect().SetUnknown(protowire.AppendBytes(mark, payload))
	return nil
}

// undecodable returns the edge error of a message that Unmarshal marked,
// or nil.
func (c *codec) undecodable(v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return nil
	}
	b := m.ProtoReflect().GetUnknown()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num != markField || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil
			}
			b = b[n:]
			continue
		}
		payload, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		rest, ok := bytes.CutPrefix(payload, c.nonce)
		if !ok {
			continue
		}
		msg, detail, _ := bytes.Cut(rest, []byte{0})
		return &edgeError{kind: errUndecodable, reason: "undecodable-request", msg: string(msg), cause: errors.New(string(detail))}
	}
	return nil
}

// invalidUTF8 returns the name of the first string field of b, a message of
// type desc, that is not valid UTF-8, with the names of the messages that
// hold it (client.user_agent). It looks no deeper than a few levels.
func invalidUTF8(desc protoreflect.MessageDescriptor, b []byte, depth int) (string, bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		fd := desc.Fields().ByNumber(num)
		switch {
		case fd == nil:
		case fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			return string(fd.Name()), true
		case fd.Kind() == protoreflect.MessageKind && depth < 4:
			if inner, ok := invalidUTF8(fd.Message(), v, depth+1); ok {
				return string(fd.Name()) + "." + inner, true
			}
		}
	}
	return "", false
}

// checkDecoded refuses a unary call whose request codec could not decode.
// It runs after authentication, so that an unknown caller learns nothing of
// how its bytes were read.
func (c *codec) checkDecoded(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := c.undecodable(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// checkDecodedStream does the same for each message of a streaming call.
func (c *codec) checkDecodedStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &decodedStream{ServerStream: ss, c: c})
}

// decodedStream refuses a received message that codec could not decode.
type decodedStream struct {
	grpc.ServerStream
	c *codec
}

func (s *decodedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.c.undecodable(m)
}
