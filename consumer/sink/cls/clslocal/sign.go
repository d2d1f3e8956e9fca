package clslocal

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Credential is one API key the server accepts.
type Credential struct {
	SecretID, SecretKey string
	// Token, when set, must arrive in X-Cls-Token (STS credentials).
	Token string
}

// verify checks the q-sign (sha1) Authorization header of r as CLS does:
//
//	info         = lower(method) \n path \n sortedParams \n sortedHeaders \n
//	StringToSign = "sha1\n" + signTime + "\n" + hex(sha1(info)) + "\n"
//	SignKey      = hex(HMAC-SHA1(secretKey, keyTime))
//	signature    = hex(HMAC-SHA1(SignKey, StringToSign))
//
// where the params and headers are the ones named in q-url-param-list and
// q-header-list, lower-cased and URL-encoded in sorted order.
func verify(r *http.Request, creds map[string]Credential, now time.Time) error {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return fmt.Errorf("no Authorization header")
	}
	kv := map[string]string{}
	for part := range strings.SplitSeq(auth, "&") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return fmt.Errorf("authorization header: malformed part %q", part)
		}
		kv[k] = v
	}
	for _, k := range []string{"q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-header-list", "q-url-param-list", "q-signature"} {
		if _, ok := kv[k]; !ok {
			return fmt.Errorf("authorization header: %s missing", k)
		}
	}
	if kv["q-sign-algorithm"] != "sha1" {
		return fmt.Errorf("authorization header: q-sign-algorithm %q, want sha1", kv["q-sign-algorithm"])
	}
	cred, ok := creds[kv["q-ak"]]
	if !ok {
		return fmt.Errorf("authorization header: unknown SecretId %q", kv["q-ak"])
	}
	if cred.Token != "" && r.Header.Get("X-Cls-Token") != cred.Token {
		return fmt.Errorf("header X-Cls-Token does not match the temporary credential of %q", cred.SecretID)
	}
	if err := checkWindow(kv["q-sign-time"], now); err != nil {
		return fmt.Errorf("authorization header: q-sign-time: %w", err)
	}
	if err := checkWindow(kv["q-key-time"], now); err != nil {
		return fmt.Errorf("authorization header: q-key-time: %w", err)
	}

	headerNames := splitSignedHeaders(kv["q-header-list"])
	paramNames := splitSignedHeaders(kv["q-url-param-list"])
	// A signature that does not cover the topic or the host could be
	// replayed against another one.
	if !slices.Contains(paramNames, "topic_id") {
		return fmt.Errorf("authorization header: q-url-param-list %q does not sign topic_id", kv["q-url-param-list"])
	}
	if !slices.Contains(headerNames, "host") {
		return fmt.Errorf("authorization header: q-header-list %q does not sign host", kv["q-header-list"])
	}
	hv := url.Values{}
	for _, name := range headerNames {
		if name == "host" {
			hv.Add(name, r.Host)
			continue
		}
		for _, v := range r.Header.Values(name) {
			hv.Add(name, v)
		}
	}
	pv := url.Values{}
	query := lowerKeys(r.URL.Query())
	for _, name := range paramNames {
		for _, v := range query[name] {
			pv.Add(name, v)
		}
	}
	info := strings.ToLower(r.Method) + "\n" + r.URL.Path + "\n" + pv.Encode() + "\n" + hv.Encode() + "\n"
	sum := sha1.Sum([]byte(info))
	stringToSign := "sha1\n" + kv["q-sign-time"] + "\n" + hex.EncodeToString(sum[:]) + "\n"
	signKey := hmacHex(cred.SecretKey, kv["q-key-time"])
	want := hmacHex(signKey, stringToSign)
	if !hmac.Equal([]byte(want), []byte(strings.ToLower(kv["q-signature"]))) {
		return fmt.Errorf("authorization header: signature mismatch for SecretId %q", cred.SecretID)
	}
	return nil
}

// Sign returns an Authorization header value for a request, computed the
// way the SDK does; for tests that build requests by hand.
func Sign(secretID, secretKey, method, path string, params, headers url.Values, now time.Time, valid time.Duration) string {
	signTime := fmt.Sprintf("%d;%d", now.Unix()-60, now.Add(valid).Unix())
	hp, hl := lowerEncode(headers)
	pp, pl := lowerEncode(params)
	info := strings.ToLower(method) + "\n" + path + "\n" + pp + "\n" + hp + "\n"
	sum := sha1.Sum([]byte(info))
	sts := "sha1\n" + signTime + "\n" + hex.EncodeToString(sum[:]) + "\n"
	sig := hmacHex(hmacHex(secretKey, signTime), sts)
	return strings.Join([]string{
		"q-sign-algorithm=sha1", "q-ak=" + secretID, "q-sign-time=" + signTime, "q-key-time=" + signTime,
		"q-header-list=" + strings.Join(hl, ";"), "q-url-param-list=" + strings.Join(pl, ";"), "q-signature=" + sig,
	}, "&")
}

func lowerEncode(v url.Values) (string, []string) {
	l := lowerKeys(v)
	names := make([]string, 0, len(l))
	for k := range l {
		names = append(names, k)
	}
	slices.Sort(names)
	return l.Encode(), names
}

func lowerKeys(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		for _, x := range vs {
			out.Add(strings.ToLower(k), x)
		}
	}
	return out
}

// splitSignedHeaders splits the signature's semicolon-separated header
// and parameter name lists (not a list flag: see cli.SplitList for those).
func splitSignedHeaders(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.ToLower(s), ";")
}

func checkWindow(s string, now time.Time) error {
	a, b, ok := strings.Cut(s, ";")
	if !ok {
		return fmt.Errorf("%q is not start;end", s)
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("%q is not two unix times", s)
	}
	if n := now.Unix(); n < start || n > end {
		return fmt.Errorf("%q does not include now (%d): expired or clock skew", s, n)
	}
	return nil
}

func hmacHex(key, msg string) string {
	h := hmac.New(sha1.New, []byte(key))
	h.Write([]byte(msg))
	return hex.EncodeToString(h.Sum(nil))
}
