// Package faults holds the fault-injection tests of the whole pipeline on a
// real Apache Kafka cluster: a broker killed and restarted under load, the
// all-in-one process killed at random moments, poison records in every
// partition. Each test runs bin/auditpipe (built into a temp dir) as a
// subprocess, posts events through its webhook, and checks through the
// query API and the topics that no acknowledged event was lost and that
// duplicates stay bounded and share (cluster, auditID, stage, content hash).
//
// The tests need the 3-node cluster that deploy/kafka/test-kafka.sh starts
// (`make test-kafka`): it sets AUDITPIPE_TEST_KAFKA_BROKERS and
// AUDITPIPE_FAULT_CLUSTER_DIR. Without them every test skips, so `make
// test` compiles and vets this package but runs nothing here.
package faults
