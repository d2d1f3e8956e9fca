package schemas

// Record header keys. Audit events carry no cluster identity, so the
// producer stamps it (and how and when the event arrived) into headers
// instead of rewriting the bytes the apiserver sent.
const (
	// HeaderCluster is the cluster id the event belongs to. On audit.raw it
	// comes from the producer's authenticated caller, never from the event.
	HeaderCluster = "auditpipe.cluster"
	// HeaderSource says how the event arrived: SourceWebhook or SourceFile.
	HeaderSource = "auditpipe.source"
	// HeaderReceivedAt is when the producer received the event, RFC 3339
	// with nanoseconds, UTC.
	HeaderReceivedAt = "auditpipe.received-at"
	// HeaderSchemaVersion is SchemaVersion in decimal, so that a reader can
	// refuse records written by a newer pipeline.
	HeaderSchemaVersion = "auditpipe.schema-version"

	// HeaderDLQReason is a human-readable reason on audit.dlq records.
	HeaderDLQReason = "auditpipe.dlq.reason"
	// HeaderDLQStage names the stage that gave up: "producer" or "processor".
	HeaderDLQStage = "auditpipe.dlq.stage"
	// HeaderDLQOrigin is "topic/partition/offset" of the original record
	// when there was one.
	HeaderDLQOrigin = "auditpipe.dlq.origin"
)

// Values of HeaderSource.
const (
	SourceWebhook = "webhook"
	SourceFile    = "file"
)
