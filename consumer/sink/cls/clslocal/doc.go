// Package clslocal is a local, protocol-faithful stand-in for Tencent Cloud
// CLS's upload endpoint (POST /structuredlog?topic_id=...), for tests and
// for the all-in-one (`--sink cls-local`), where it shows exactly what would
// have been sent to CLS.
//
// It checks what the real endpoint checks and answers the way the real
// endpoint answers (see docs in ../shared/docs/cls.md): the q-sign sha1
// request signature, the x-cls-compress-type body encodings (raw LZ4 block,
// zstd frame, raw deflate), the protobuf LogGroupList, and CLS's per-request
// limits. Errors are JSON {"errorcode","errormessage"} with an
// X-Cls-Requestid header, so the real SDK classifies them as it would in
// production. Faults can be scripted per topic (429, 5xx, 401, 404, ...),
// and every accepted log is recorded.
//
// It lives next to the CLS sink (consumer/sink/cls) because it is the
// sink's counterpart: the sink's tests, the consumer's scaling tests and the
// all-in-one all import it, and nothing in it is test-only code that a
// production binary would be ashamed to link.
package clslocal
