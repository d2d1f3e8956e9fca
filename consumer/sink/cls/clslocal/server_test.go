package clslocal_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	cls "github.com/tencentcloud/tencentcloud-cls-sdk-go"
	"google.golang.org/protobuf/proto"

	"github.com/auditpipe/auditpipe/consumer/sink/cls/clslocal"
)

const (
	secretID  = "AKIDtest"
	secretKey = "s3cr3t"
)

func newServer(t testing.TB, opts clslocal.Options) (*clslocal.Server, string) {
	t.Helper()
	if opts.Credentials == nil {
		opts.Credentials = []clslocal.Credential{{SecretID: secretID, SecretKey: secretKey}}
	}
	s := clslocal.New(opts)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return s, strings.TrimPrefix(hs.URL, "http://")
}

// client is the SDK's own lowest layer: one request, the server's answer
// comes back as a *CLSError with the HTTP status.
func client(t testing.TB, host, key, compress string) *cls.CLSClient {
	t.Helper()
	c, err := cls.NewCLSClient(&cls.Options{
		Host: host, CompressType: compress, Timeout: 5000,
		Credentials: cls.Credentials{SecretID: secretID, SecretKEY: key},
	})
	require.Nil(t, err)
	return c
}

func group(logs ...map[string]string) *cls.LogGroup {
	g := &cls.LogGroup{Source: proto.String("test")}
	for _, l := range logs {
		lg := &cls.Log{Time: proto.Int64(1700000000123)}
		for k, v := range l {
			lg.Contents = append(lg.Contents, &cls.Log_Content{Key: proto.String(k), Value: proto.String(v)})
		}
		g.Logs = append(g.Logs, lg)
	}
	return g
}

func TestSDKRoundTripEveryCompression(t *testing.T) {
	s, host := newServer(t, clslocal.Options{Topics: []string{"topic-a"}})
	for _, compress := range []string{"lz4", "zstd", "deflate"} {
		c := client(t, host, secretKey, compress)
		// Repetitive and random values: LZ4's compressible and literal-only
		// paths both have to decode.
		random := make([]byte, 3000)
		_, _ = rand.Read(random)
		err := c.Send(context.Background(), "topic-a", group(
			map[string]string{"verb": "get", "objectRef.resource": "pods", "compress": compress},
			map[string]string{"requestObject": strings.Repeat(`{"a":1}`, 5000), "random": hex.EncodeToString(random)},
		))
		require.Nil(t, err, compress)
	}
	logs := s.Logs()
	require.Len(t, logs, 6)
	for i, compress := range []string{"lz4", "zstd", "deflate"} {
		l := logs[2*i]
		require.Equal(t, "topic-a", l.Topic)
		require.Equal(t, int64(1700000000123), l.Time)
		v, ok := l.Get("compress")
		require.True(t, ok)
		require.Equal(t, compress, v)
		v, _ = l.Get("objectRef.resource")
		require.Equal(t, "pods", v)
		v, _ = logs[2*i+1].Get("requestObject")
		require.Equal(t, strings.Repeat(`{"a":1}`, 5000), v)
		require.Equal(t, "test", l.Source)
	}
	require.Equal(t, int64(6), s.LogCount("topic-a"))
}

func TestRejectsBadSignature(t *testing.T) {
	s, host := newServer(t, clslocal.Options{})
	err := client(t, host, "wrong-key", "lz4").Send(context.Background(), "t", group(map[string]string{"a": "b"}))
	require.NotNil(t, err)
	require.Equal(t, int32(401), err.HTTPCode)
	require.Equal(t, "Unauthorized", err.Code)
	require.Contains(t, err.Message, "signature mismatch")
	require.NotEmpty(t, err.RequestID)
	require.Empty(t, s.Logs())

	// Expired window, tampered topic, missing header: all 401.
	now := time.Now()
	params := url.Values{"topic_id": {"t"}}
	u, _ := url.Parse("http://" + host)
	headers := url.Values{"Host": {u.Host}, "Content-Type": {"application/x-protobuf"}}
	body, _ := (&cls.LogGroupList{LogGroupList: []*cls.LogGroup{group(map[string]string{"a": "b"})}}).Marshal()
	for name, tc := range map[string]struct {
		auth  string
		topic string
	}{
		"expired":  {clslocal.Sign(secretID, secretKey, "POST", "/structuredlog", params, headers, now.Add(-time.Hour), time.Minute), "t"},
		"replayed": {clslocal.Sign(secretID, secretKey, "POST", "/structuredlog", params, headers, now, time.Minute), "other"},
		"no auth":  {"", "t"},
		"unknown":  {clslocal.Sign("AKIDother", secretKey, "POST", "/structuredlog", params, headers, now, time.Minute), "t"},
	} {
		req, _ := http.NewRequest("POST", "http://"+host+"/structuredlog?topic_id="+tc.topic, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var e map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		resp.Body.Close()
		require.Equal(t, 401, resp.StatusCode, name)
		require.Equal(t, "Unauthorized", e["errorcode"], name)
		require.NotEmpty(t, resp.Header.Get("X-Cls-Requestid"), name)
		t.Log(name, e["errormessage"])
	}
	// The hand signature is right when nothing is tampered with.
	req, _ := http.NewRequest("POST", "http://"+host+"/structuredlog?topic_id=t", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Authorization", clslocal.Sign(secretID, secretKey, "POST", "/structuredlog", params, headers, now, time.Minute))
	resp, err2 := http.DefaultClient.Do(req)
	require.NoError(t, err2)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
}

func TestScriptedFaultsAndMissingTopic(t *testing.T) {
	s, host := newServer(t, clslocal.Options{Topics: []string{"a"}})
	c := client(t, host, secretKey, "lz4")
	send := func(topic string) *cls.CLSError {
		return c.Send(context.Background(), topic, group(map[string]string{"k": "v"}))
	}
	err := send("missing")
	require.NotNil(t, err)
	require.Equal(t, int32(404), err.HTTPCode)
	require.Equal(t, "TopicNotExist", err.Code)

	s.FailNext("a", clslocal.FaultSpeedQuota, clslocal.FaultUnavailable)
	err = send("a")
	require.NotNil(t, err)
	require.Equal(t, int32(429), err.HTTPCode)
	err = send("a")
	require.NotNil(t, err)
	require.Equal(t, int32(503), err.HTTPCode)
	require.Nil(t, send("a"))

	s.FailAlways("a", clslocal.FaultUnauthorized)
	for range 3 {
		err = send("a")
		require.NotNil(t, err)
		require.Equal(t, int32(401), err.HTTPCode)
	}
	s.Heal("a")
	require.Nil(t, send("a"))
	s.AddTopic("missing")
	require.Nil(t, send("missing"))
	st := s.Stats()
	require.Equal(t, int64(3), st.Accepted)
	require.Equal(t, int64(6), st.Rejected)
	require.Equal(t, int64(3), st.ByStatus[401])
}

func TestLimits(t *testing.T) {
	_, host := newServer(t, clslocal.Options{})
	c := client(t, host, secretKey, "lz4")
	big := make([]byte, 600<<10)
	_, _ = rand.Read(big)
	bigHex := hex.EncodeToString(big) // 1.2 MB, incompressible
	many := make([]*cls.LogGroup, 11)
	for i := range many {
		many[i] = group(map[string]string{"k": "v"})
	}
	tooMany := group()
	for range 10001 {
		tooMany.Logs = append(tooMany.Logs, group(map[string]string{"k": "v"}).Logs[0])
	}
	bodyTooBig := make([]*cls.LogGroup, 7)
	for i := range bodyTooBig {
		bodyTooBig[i] = group(map[string]string{"k": bigHex[:1<<20]})
	}
	groupTooBig := group()
	for range 6 {
		// Compressible, so the body stays under 6 MB.
		groupTooBig.Logs = append(groupTooBig.Logs, group(map[string]string{"k": strings.Repeat("a", 1<<20)}).Logs[0])
	}
	for name, tc := range map[string]struct {
		groups []*cls.LogGroup
		status int32
		msg    string
	}{
		"underscore key":  {[]*cls.LogGroup{group(map[string]string{"_source": "x"})}, 400, "starts with _"},
		"value over 1 MB": {[]*cls.LogGroup{group(map[string]string{"requestObject": bigHex})}, 403, "at most 1048576"},
		"11 groups":       {many, 400, "11 LogGroups"},
		"10001 logs":      {[]*cls.LogGroup{tooMany}, 400, "10001 logs"},
		"empty group":     {[]*cls.LogGroup{group()}, 400, "0 logs"},
		"group over 5 MB": {[]*cls.LogGroup{groupTooBig}, 403, "bytes of values"},
		"body over 6 MB":  {bodyTooBig, 413, ""},
	} {
		err := c.Send(context.Background(), "t", tc.groups...)
		require.NotNil(t, err, name)
		require.Equal(t, tc.status, err.HTTPCode, name)
		// The SDK reads the JSON error body only for 401/403/404/413.
		if tc.msg != "" && tc.status != 400 {
			require.Contains(t, err.Message, tc.msg, name)
		}
	}
	// Exactly at the limits is fine.
	atLimit := group()
	for range 10000 {
		atLimit.Logs = append(atLimit.Logs, group(map[string]string{"k": "v"}).Logs[0])
	}
	require.Nil(t, c.Send(context.Background(), "t", atLimit, group(map[string]string{"k": bigHex[:1<<20]})))
}

func TestRejectsGarbage(t *testing.T) {
	_, host := newServer(t, clslocal.Options{Credentials: []clslocal.Credential{}})
	for name, tc := range map[string]struct{ compress, body string }{
		"bad protobuf": {"", "\x0a\xff\xff\xff"},
		"bad lz4":      {"lz4", "\xff\xff\xff\xff\xff"},
		"bad zstd":     {"zstd", "nope"},
		"unknown":      {"snappy", "x"},
	} {
		req, _ := http.NewRequest("POST", "http://"+host+"/structuredlog?topic_id=t", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/x-protobuf")
		if tc.compress != "" {
			req.Header.Set("x-cls-compress-type", tc.compress)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var e map[string]string
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&e))
		resp.Body.Close()
		require.Equal(t, 400, resp.StatusCode, name)
		require.Equal(t, "InvalidContent", e["errorcode"], name)
		t.Log(name, e["errormessage"])
	}
}
