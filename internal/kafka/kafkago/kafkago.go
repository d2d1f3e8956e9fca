// Package kafkago adapts github.com/segmentio/kafka-go to the kafka port
// (package kafka): a Producer on kafka.Writer, a GroupConsumer on the
// lower-level kafka.ConsumerGroup API with one partition reader per
// assigned partition, and an Admin on kafka.Client.
//
// kafka-go is used where it is strongest: simple, fast producing and plain
// consumer groups. It does not filter aborted transactions (see Group), so
// transactional topics are read with the sarama adapter instead.
package kafkago

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	kgo "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// dialTimeout bounds connection set-up; kafka-go's default dialer uses the
// same value.
const dialTimeout = 10 * time.Second

// Option tunes a Group beyond what kafka.GroupConfig describes.
type Option func(*options)

type options struct {
	logger *slog.Logger
}

// WithLogger makes the group log the errors it recovers from by itself
// (failed joins, reader and commit errors that end a generation). Without
// it they are silent, as the port has no logger.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

func buildOptions(opts []Option) options {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// log returns the configured logger, or one that discards.
func (o options) log() *slog.Logger {
	if o.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.logger
}

// kafkaGoLogger routes kafka-go's internal error log to slog, so that
// errors the library retries silently (a coordinator that moved, a failed
// heartbeat) still leave a trace. It is nil without WithLogger, which
// spares kafka-go formatting messages nobody reads.
func (o options) kafkaGoLogger(attrs ...any) kgo.Logger {
	if o.logger == nil {
		return nil
	}
	l := o.logger.With(attrs...)
	return kgo.LoggerFunc(func(msg string, args ...any) {
		l.Warn("kafka-go: " + strings.TrimSpace(fmt.Sprintf(msg, args...)))
	})
}

// security is what every connection of a client needs: the dialer (TCP
// and TLS, see kafka.Dialer) and the SASL mechanism (nil for none).
type security struct {
	dialer  *kafka.Dialer
	mech    sasl.Mechanism
	sasl    kafka.SASL
	brokers []string
}

// newSecurity loads t's files and s's password file.
func newSecurity(brokers []string, t kafka.TLS, s kafka.SASL) (security, error) {
	d, err := kafka.NewDialer(t, dialTimeout)
	if err != nil {
		return security{}, err
	}
	mech, err := saslMechanism(s)
	if err != nil {
		return security{}, err
	}
	return security{dialer: d, mech: mech, sasl: s, brokers: brokers}, nil
}

// saslMechanism returns kafka-go's mechanism for s; nil for none.
func saslMechanism(s kafka.SASL) (sasl.Mechanism, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	s, err := s.Resolved()
	if err != nil {
		return nil, err
	}
	switch s.Mechanism {
	case kafka.SASLPlain:
		return plain.Mechanism{Username: s.Username, Password: s.Password}, nil
	case kafka.SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, s.Username, s.Password)
	case kafka.SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, s.Username, s.Password)
	}
	return nil, nil
}

// describe adds the brokers, mechanism and user to an authentication
// failure (kafka-go reports only the broker's error code); other errors
// are returned as they are.
func (s security) describe(err error) error {
	if err != nil && errors.Is(err, kgo.SASLAuthenticationFailed) {
		return kafka.AuthFailed(err, s.brokers, s.sasl)
	}
	return err
}

// permanent reports whether err is one that retrying at once cannot fix:
// an untrusted certificate or a refused password (see kafka.Refused).
func permanent(err error) bool {
	return kafka.Refused(err) || errors.Is(err, kgo.SASLAuthenticationFailed)
}

// newDialer and newTransport connect with s. kafka-go's own TLS stays off:
// the handshake happens in kafka.Dialer, whose errors name the broker.
func newDialer(clientID string, s security) *kgo.Dialer {
	return &kgo.Dialer{ClientID: clientID, Timeout: dialTimeout, DialFunc: s.dialer.DialContext, SASLMechanism: s.mech}
}

func newTransport(clientID string, s security) *kgo.Transport {
	return &kgo.Transport{ClientID: clientID, DialTimeout: dialTimeout, Dial: s.dialer.DialContext, SASL: s.mech}
}

// describingTransport is a transport whose errors say what failed where:
// authentication failures name the brokers, mechanism and user
// (security.describe), and "Broker Not Available", which is all kafka-go's
// Client says when it could not connect or authenticate, gets the cause.
type describingTransport struct {
	*kgo.Transport
	clientID string
	sec      security
}

func (t describingTransport) RoundTrip(ctx context.Context, addr net.Addr, req kgo.Request) (kgo.Response, error) {
	resp, err := t.Transport.RoundTrip(ctx, addr, req)
	if errors.Is(err, kgo.BrokerNotAvailable) {
		if perr := t.probe(ctx); perr != nil {
			err = fmt.Errorf("%w; cause: %w", err, t.sec.describe(perr))
		}
	}
	return resp, t.sec.describe(err)
}

// probe connects, authenticates and sends one request to the bootstrap
// brokers one at a time, and returns the first failure when none works,
// nil as soon as one does.
func (t describingTransport) probe(ctx context.Context) error {
	d := newDialer(t.clientID, t.sec)
	var first error
	for _, b := range t.sec.brokers {
		conn, err := d.DialContext(ctx, "tcp", b)
		if err == nil {
			// One request: a broker that refuses the client certificate
			// says so only now (TLS 1.3).
			_ = conn.SetDeadline(time.Now().Add(dialTimeout))
			_, err = conn.ApiVersions()
			_ = conn.Close()
			if err == nil {
				return nil
			}
		}
		if first == nil {
			// kafka.Dialer's errors and kafka-go's SASL errors name
			// the broker already.
			first = err
		}
	}
	return first
}

func toMessage(r kafka.Record) kgo.Message {
	m := kgo.Message{Topic: r.Topic, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		m.Headers = make([]kgo.Header, len(r.Headers))
		for i, h := range r.Headers {
			m.Headers[i] = kgo.Header{Key: h.Key, Value: h.Value}
		}
	}
	return m
}

func toRecord(topic string, partition int32, m kgo.Message) kafka.Record {
	r := kafka.Record{
		Topic:     topic,
		Partition: partition,
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Time:      m.Time,
	}
	if len(m.Headers) > 0 {
		r.Headers = make([]kafka.Header, len(m.Headers))
		for i, h := range m.Headers {
			r.Headers[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
	}
	return r
}
