// Package fleet holds the fleet test: the pipeline run as an operator runs
// it in production, as separate stage processes on a shared 3-broker Apache
// Kafka cluster, and crashed one stage at a time under load.
//
// The test builds the stage binaries (producer, processor, consumer), writes
// their YAML config files and starts them as processes: two producers
// receiving two clusters' apiservers (the apiserver's own webhook client,
// with a TLS client certificate per cluster), two processors in one group,
// two consumers in one group writing the protocol-faithful local CLS server
// (consumer/sink/cls/clslocal, run by the test), and one consumer writing
// the local store and serving its search API. Every stage connects to Kafka
// through the SASL_SSL listener (SCRAM-SHA-512, the test CA) that
// test-kafka.sh starts. Under load it kills -9 one process of each stage in
// turn and restarts it, then checks that every acknowledged event is stored
// once by (cluster, auditID, stage), that each cluster's events reached its
// own CLS topic, and that the local store's search API answers for the
// whole fleet. It ends with one summary line:
//
//	fleet: clusters=2 acked=N stored=N lost=0 duplicates_removed=M ...
//
// The test needs the 3-node cluster that deploy/kafka/test-kafka.sh starts
// (`make test-kafka`, suite "fleet"): it sets AUDITPIPE_TEST_KAFKA_BROKERS,
// the AUDITPIPE_TEST_KAFKA_SASL_SSL... variables and AUDITPIPE_FLEET=1.
// Without them the test skips, so `make test`
// compiles and vets this package but runs nothing here.
package fleet
