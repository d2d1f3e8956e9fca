package clslocal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CLS's documented per-request limits.
const (
	MaxLogGroups      = 10
	MaxLogsPerGroup   = 10000
	MaxValueBytes     = 1 << 20
	MaxGroupBytes     = 5 << 20
	MaxBodyBytes      = 6 << 20
	maxDecodedBytes   = MaxLogGroups*MaxGroupBytes + 8<<20 // values plus keys and framing
	requestIDHeader   = "X-Cls-Requestid"
	compressionHeader = "X-Cls-Compress-Type"
)

// Fault is an error answer the server gives instead of accepting a request.
type Fault struct {
	Status  int
	Code    string
	Message string
}

// Faults CLS really returns, for scripting.
var (
	FaultSpeedQuota    = Fault{http.StatusTooManyRequests, "SpeedQuotaExceed", "write speed quota exceeded"}
	FaultInternal      = Fault{http.StatusInternalServerError, "InternalError", "internal error"}
	FaultUnavailable   = Fault{http.StatusServiceUnavailable, "InternalError", "service unavailable"}
	FaultTopicNotExist = Fault{http.StatusNotFound, "TopicNotExist", "topic does not exist"}
	FaultUnauthorized  = Fault{http.StatusUnauthorized, "Unauthorized", "unauthorized"}
	FaultLogSize       = Fault{http.StatusForbidden, "LogSizeExceed", "log size exceeds limit"}
)

// Options configures a Server.
type Options struct {
	// Credentials are the API keys accepted. Empty: the signature is not
	// checked at all (the all-in-one, which has no secrets to check).
	Credentials []Credential
	// Topics are the topic IDs that exist. Empty: every topic exists (the
	// all-in-one's choice); otherwise an unknown topic gets 404
	// TopicNotExist like the real service.
	Topics []string
	// KeepLogs caps how many accepted logs are kept for Logs(); older ones
	// are dropped (the counters still count them). 0 keeps everything.
	KeepLogs int
	// DiscardLogs keeps no logs at all (counters only); with OnLog, for
	// load tests that must not hold every log in memory.
	DiscardLogs bool
	// OnLog, when set, sees every accepted log, in order, under the
	// server's lock (keep it quick).
	OnLog func(Received)
	// Logger receives one line per rejected request. Nil discards.
	Logger *slog.Logger
	// Now is the clock used for signature windows. Nil: time.Now.
	Now func() time.Time
}

// Received is one accepted log with where it came from.
type Received struct {
	Topic     string
	RequestID string
	Group     int // index of its LogGroup in the request
	Source    string
	Log
}

// Stats counts requests by outcome.
type Stats struct {
	Requests, Accepted, Rejected, Logs int64
	// ByStatus counts answers by HTTP status.
	ByStatus map[int]int64
}

// Server is the local CLS endpoint. Its zero value is not usable; use New.
type Server struct {
	opts   Options
	creds  map[string]Credential
	logger *slog.Logger
	now    func() time.Time
	seq    atomic.Int64

	mu       sync.Mutex
	topics   map[string]bool // nil: every topic exists
	script   map[string][]Fault
	sticky   map[string]Fault
	logs     []Received
	dropped  int
	perTopic map[string]int64
	stats    Stats
}

// New returns a server.
func New(opts Options) *Server {
	s := &Server{
		opts:     opts,
		creds:    map[string]Credential{},
		logger:   opts.Logger,
		now:      opts.Now,
		script:   map[string][]Fault{},
		sticky:   map[string]Fault{},
		perTopic: map[string]int64{},
		stats:    Stats{ByStatus: map[int]int64{}},
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, c := range opts.Credentials {
		s.creds[c.SecretID] = c
	}
	if len(opts.Topics) > 0 {
		s.topics = map[string]bool{}
		for _, t := range opts.Topics {
			s.topics[t] = true
		}
	}
	return s
}

// AddTopic makes a topic exist (only meaningful when Options.Topics was
// set).
func (s *Server) AddTopic(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.topics != nil {
		s.topics[id] = true
	}
}

// FailNext makes the next len(faults) requests to topic fail, in order.
func (s *Server) FailNext(topic string, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script[topic] = append(s.script[topic], faults...)
}

// FailAlways makes every request to topic fail with f until Heal.
func (s *Server) FailAlways(topic string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sticky[topic] = f
}

// Heal removes the scripted faults of topic.
func (s *Server) Heal(topic string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sticky, topic)
	delete(s.script, topic)
}

// Logs returns a copy of the kept accepted logs, oldest first.
func (s *Server) Logs() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.logs...)
}

// LogCount returns how many logs topic accepted ("" = all topics).
func (s *Server) LogCount(topic string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if topic == "" {
		return s.stats.Logs
	}
	return s.perTopic[topic]
}

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ByStatus = make(map[int]int64, len(s.stats.ByStatus))
	for k, v := range s.stats.ByStatus {
		st.ByStatus[k] = v
	}
	return st
}

// Handler returns the HTTP handler: POST /structuredlog is the CLS
// upload API; GET /logs?topic_id=&limit= lists the newest kept logs as
// JSON so that a person can see what would have been sent.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/structuredlog", s.upload)
	mux.HandleFunc("GET /logs", s.list)
	return mux
}

type apiError struct {
	Fault
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func reject(status int, code, format string, args ...any) *apiError {
	return &apiError{Fault: Fault{status, code, fmt.Sprintf(format, args...)}}
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	reqID := fmt.Sprintf("clslocal-%d-%d", s.now().UnixNano(), s.seq.Add(1))
	w.Header().Set(requestIDHeader, reqID)
	topic := r.URL.Query().Get("topic_id")
	groups, err := s.accept(r, topic)
	s.mu.Lock()
	s.stats.Requests++
	if err != nil {
		s.stats.Rejected++
		s.stats.ByStatus[err.Status]++
		s.mu.Unlock()
		s.logger.Info("cls-local: request rejected", "topic_id", topic, "status", err.Status,
			"errorcode", err.Code, "errormessage", err.Message, "request_id", reqID)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(err.Status)
		_ = json.NewEncoder(w).Encode(map[string]string{"errorcode": err.Code, "errormessage": err.Message})
		return
	}
	s.stats.Accepted++
	s.stats.ByStatus[http.StatusOK]++
	for gi, g := range groups {
		for _, l := range g.Logs {
			s.stats.Logs++
			s.perTopic[topic]++
			rec := Received{Topic: topic, RequestID: reqID, Group: gi, Source: g.Source, Log: l}
			if s.opts.OnLog != nil {
				s.opts.OnLog(rec)
			}
			if !s.opts.DiscardLogs {
				s.logs = append(s.logs, rec)
			}
		}
	}
	if k := s.opts.KeepLogs; k > 0 && len(s.logs) > k {
		n := len(s.logs) - k
		s.dropped += n
		s.logs = append(s.logs[:0], s.logs[n:]...)
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// accept runs the checks in the order the real service does: method,
// parameters, authentication, topic, body.
func (s *Server) accept(r *http.Request, topic string) ([]LogGroup, *apiError) {
	if r.Method != http.MethodPost {
		return nil, reject(http.StatusMethodNotAllowed, "InvalidParam", "method %s not allowed, use POST", r.Method)
	}
	if topic == "" {
		return nil, reject(http.StatusBadRequest, "InvalidParam", "missing query parameter topic_id")
	}
	if len(s.creds) > 0 {
		if err := verify(r, s.creds, s.now()); err != nil {
			return nil, reject(http.StatusUnauthorized, "Unauthorized", "%v", err)
		}
	}
	s.mu.Lock()
	fault, scripted := s.sticky[topic]
	if !scripted {
		if q := s.script[topic]; len(q) > 0 {
			fault, scripted = q[0], true
			s.script[topic] = q[1:]
		}
	}
	exists := s.topics == nil || s.topics[topic]
	s.mu.Unlock()
	if scripted {
		return nil, &apiError{Fault: fault}
	}
	if !exists {
		return nil, reject(http.StatusNotFound, "TopicNotExist", "topic %s does not exist", topic)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		return nil, reject(http.StatusBadRequest, "InvalidParam", "Content-Type %q, want application/x-protobuf", ct)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, reject(http.StatusBadRequest, "InvalidContent", "read body: %v", err)
	}
	if len(body) > MaxBodyBytes {
		return nil, reject(http.StatusRequestEntityTooLarge, "InvalidContent", "body larger than %d bytes", MaxBodyBytes)
	}
	raw, err := decompress(strings.ToLower(r.Header.Get(compressionHeader)), body, maxDecodedBytes)
	if err != nil {
		return nil, reject(http.StatusBadRequest, "InvalidContent", "decompress body: %v", err)
	}
	groups, err := decodeLogGroupList(raw)
	if err != nil {
		return nil, reject(http.StatusBadRequest, "InvalidContent", "decode LogGroupList: %v", err)
	}
	if err := checkLimits(groups); err != nil {
		return nil, err
	}
	return groups, nil
}

func checkLimits(groups []LogGroup) *apiError {
	if len(groups) == 0 {
		return reject(http.StatusBadRequest, "InvalidContent", "LogGroupList is empty")
	}
	if len(groups) > MaxLogGroups {
		return reject(http.StatusBadRequest, "InvalidParam", "%d LogGroups in one request, at most %d", len(groups), MaxLogGroups)
	}
	for gi, g := range groups {
		if n := len(g.Logs); n == 0 || n > MaxLogsPerGroup {
			return reject(http.StatusBadRequest, "InvalidParam", "logGroupList[%d]: %d logs, want 1 to %d", gi, n, MaxLogsPerGroup)
		}
		total := 0
		for li, l := range g.Logs {
			for _, c := range l.Contents {
				if c.Key == "" {
					return reject(http.StatusBadRequest, "InvalidContent", "logGroupList[%d].logs[%d]: empty key", gi, li)
				}
				if strings.HasPrefix(c.Key, "_") {
					return reject(http.StatusBadRequest, "InvalidContent", "logGroupList[%d].logs[%d]: key %q starts with _ (reserved)", gi, li, c.Key)
				}
				if len(c.Value) > MaxValueBytes {
					return reject(http.StatusForbidden, "LogSizeExceed", "logGroupList[%d].logs[%d]: value of %q is %d bytes, at most %d", gi, li, c.Key, len(c.Value), MaxValueBytes)
				}
				total += len(c.Value)
			}
		}
		if total > MaxGroupBytes {
			return reject(http.StatusForbidden, "LogSizeExceed", "logGroupList[%d]: %d bytes of values, at most %d", gi, total, MaxGroupBytes)
		}
	}
	return nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			http.Error(w, "limit: want a positive integer", http.StatusBadRequest)
			return
		}
		limit = n
	}
	topic := r.URL.Query().Get("topic_id")
	type item struct {
		Topic     string            `json:"topic_id"`
		RequestID string            `json:"requestId"`
		Time      int64             `json:"time"`
		Contents  map[string]string `json:"contents"`
	}
	out := []item{}
	s.mu.Lock()
	for i := len(s.logs) - 1; i >= 0 && len(out) < limit; i-- {
		l := s.logs[i]
		if topic != "" && l.Topic != topic {
			continue
		}
		m := make(map[string]string, len(l.Contents))
		for _, c := range l.Contents {
			m[c.Key] = c.Value
		}
		out = append(out, item{l.Topic, l.RequestID, l.Time, m})
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		s.logger.Debug("cls-local: write /logs", "err", err)
	}
}
