package main

import (
	"errors"
	"flag"
	"io/fs"
	"path/filepath"

	"github.com/auditpipe/auditpipe/consumer/group"
	"github.com/auditpipe/auditpipe/deploy/local/allinone"
	"github.com/auditpipe/auditpipe/internal/kafka"
)

// kafkaFlags are the Kafka connection flags of the tools the all-in-one
// shares with the stage binaries (replay, groups): the stages' flags, and
// --kafka-credentials for the embedded broker's SASL user.
func kafkaFlags(fs *flag.FlagSet, args []string) (func() (kafka.ReaderConfig, error), error) {
	conn, err := group.DefaultKafkaFlags(fs, args)
	if err != nil {
		return nil, err
	}
	credentials := kafkaCredentialsFlag(fs)
	return func() (kafka.ReaderConfig, error) {
		rc, err := conn()
		if err != nil {
			return rc, err
		}
		s, err := credentials()
		if err != nil {
			return rc, err
		}
		// --kafka-sasl-* (an external cluster) win over the embedded
		// broker's credentials file, which is read only when they are
		// absent.
		if !rc.SASL.Enabled() {
			rc.SASL = s
		}
		return rc, nil
	}, nil
}

// kafkaCredentialsFlag registers --kafka-credentials on flags and returns
// the function that resolves it once flags are parsed. The default is the
// file `auditpipe run` writes into its default data directory; when that
// file is absent the client connects without SASL (an external cluster).
// A file named explicitly must exist.
func kafkaCredentialsFlag(flags *flag.FlagSet) func() (kafka.SASL, error) {
	def := filepath.Join(allinone.DefaultConfig().DataDir, allinone.CredentialsFile)
	path := flags.String("kafka-credentials", def, "`file` with the embedded broker's SASL credentials, written by \"auditpipe run\" into its data directory (empty: no SASL)")
	return func() (kafka.SASL, error) {
		if *path == "" {
			return kafka.SASL{}, nil
		}
		s, err := allinone.LoadKafkaCredentials(*path)
		if errors.Is(err, fs.ErrNotExist) && *path == def && !flagSet(flags, "kafka-credentials") {
			return kafka.SASL{}, nil
		}
		return s, err
	}
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(flags *flag.FlagSet, name string) bool {
	set := false
	flags.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
