// Package bench is the harness behind `make bench`: it measures each stage
// of the pipeline (producer, processor, consumer) and the whole pipeline end
// to end on a real Kafka-protocol broker (the embedded kfake broker, and
// Apache Kafka when AUDITPIPE_TEST_KAFKA_BROKERS names one), next to a
// pass-through baseline that moves the same records through the same client
// and broker with no processing, so every figure comes with the cost of
// simply moving its bytes through Kafka.
//
// A measurement unit is one (broker, stage, variant); by default each unit
// runs in its own subprocess so its peak RSS is its own. A unit runs warm-up
// rounds and then measured rounds of a fixed event count, each round on
// fresh topics and consumer groups; the report gives min and median over
// the measured rounds. The coupling to the stages is one adapter file per
// stage (producer.go, processor.go, consumer.go, cls.go, e2e.go), built on the same
// constructors deploy/local/allinone wires.
package bench
