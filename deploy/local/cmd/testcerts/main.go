// Command testcerts writes the throwaway CA, broker and client
// certificates of the Kafka TLS tests into a directory (see
// internal/kafka/kafkatest/testpki for the file names). deploy/kafka/test-kafka.sh
// runs it before it starts brokers with a SASL_SSL listener. Test use only.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/auditpipe/auditpipe/internal/kafka/kafkatest/testpki"
)

func main() {
	dir := flag.String("dir", "", "directory to write the certificates to (created)")
	hosts := flag.String("hosts", "127.0.0.1,localhost", "comma-separated names and IPs of the broker certificate")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "testcerts: --dir is required")
		os.Exit(2)
	}
	if _, err := testpki.Write(*dir, strings.Split(*hosts, ",")); err != nil {
		fmt.Fprintf(os.Stderr, "testcerts: %v\n", err)
		os.Exit(1)
	}
}
