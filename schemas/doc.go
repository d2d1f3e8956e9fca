// Package schemas holds the contracts between auditpipe's stages: topic
// names, Kafka record header keys, the processed-event type and its JSON
// Schema, and the schema version. It imports only the standard library so
// that any stage, tool or third-party consumer can depend on it cheaply.
package schemas
