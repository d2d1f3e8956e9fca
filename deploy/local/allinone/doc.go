// Package allinone runs the whole auditpipe pipeline in one process: an
// embedded Kafka broker (kfake), the producer's webhook receiver, the
// processor, the consumer with the local store, and the query API. It is
// what `make run` starts and what the end-to-end tests drive. Each stage is
// wired exactly as its own binary wires it; only the process is shared.
package allinone
