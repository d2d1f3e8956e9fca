// Package cls is the consumer's Tencent Cloud CLS sink: it flattens
// processed events into CLS key/values and sends them to the CLS topic of
// their cluster (from the fleet registry) with the official SDK's
// AsyncProducerClient.
//
// Write returns only when the SDK reported Success for every record of the
// batch, so the group commits a partition's offset only past records CLS
// has. Transient failures (429, 5xx, network) are retried with exponential
// backoff and full jitter while the partition waits; the SDK's own retries
// are switched off because it retries on its linger timer without jitter and
// retries 403 LogSizeExceed, which never succeeds. Permanent failures
// (401, 403, 404: bad credentials, a deleted topic) mark the cluster
// blocked (an error log and auditpipe_clssink_cluster_blocked) and are
// retried slowly, so the fix (create the topic, rotate the key) resumes
// delivery without a restart and nothing is committed or lost meanwhile.
//
// Events are keyed by cluster, so a cluster lives on one partition: a
// blocked cluster holds back only the clusters that share its partition,
// and the records of those that were already sent are not sent again
// (only failed chunks are retried). See docs/decisions/0005-cls-sink.md.
package cls
