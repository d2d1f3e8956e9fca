package allinone

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/durablefile"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/auditpipe/auditpipe/internal/kafka"
	"github.com/auditpipe/auditpipe/internal/privatefs"
)

// CredentialsFile is the name, under the data directory, of the embedded
// broker's client credentials: JSON {mechanism, username, password}.
// Every client of the all-in-one, and the replay and groups commands,
// authenticate with it; without it nobody on the host can read audit.raw
// from the broker or write events past the webhook's credential binding.
const CredentialsFile = "kafka-credentials.json"

// kafkaUser is the one user of the embedded broker.
const kafkaUser = "auditpipe"

// LoadKafkaCredentials reads a credentials file (CredentialsFile under a
// data directory).
func LoadKafkaCredentials(path string) (kafka.SASL, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return kafka.SASL{}, fmt.Errorf("read kafka credentials: %w", err)
	}
	var s kafka.SASL
	if err := json.Unmarshal(data, &s); err != nil {
		return kafka.SASL{}, fmt.Errorf("kafka credentials %s: %w (delete the file to have a new password generated at the next start)", path, err)
	}
	if !s.Enabled() {
		return kafka.SASL{}, fmt.Errorf("kafka credentials %s: no mechanism", path)
	}
	if err := s.Validate(); err != nil {
		return kafka.SASL{}, fmt.Errorf("kafka credentials %s: %w", path, err)
	}
	return s, nil
}

// kafkaCredentials returns the data directory's credentials, generating
// them (a random 256-bit password, SCRAM-SHA-256, which never sends the
// password itself) at the first start. The file is written 0600 and
// renamed into place, so a crash leaves either no file or a whole one.
func kafkaCredentials(dataDir string) (kafka.SASL, error) {
	path := filepath.Join(dataDir, CredentialsFile)
	s, err := LoadKafkaCredentials(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return s, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return kafka.SASL{}, fmt.Errorf("generate kafka password: %w", err)
	}
	s = kafka.SASL{Mechanism: kafka.SASLScramSHA256, Username: kafkaUser, Password: base64.RawURLEncoding.EncodeToString(secret)}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return kafka.SASL{}, err
	}
	if err := durablefile.Write(path, append(data, '\n'), privatefs.FileMode); err != nil {
		return kafka.SASL{}, fmt.Errorf("write kafka credentials: %w", err)
	}
	return s, nil
}
