// Package config loads YAML configuration files strictly: an unknown key is
// an error that names the key and the file, because a misspelt option that
// is silently ignored is how audit pipelines end up dropping events.
package config

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// Validator is implemented by configuration types that check themselves
// after loading.
type Validator interface {
	Validate() error
}

// LoadFile decodes the YAML (or JSON) file at path into out, which should
// already hold the defaults: keys absent from the file keep them. Unknown
// keys are errors. If out implements Validator, Validate runs last.
func LoadFile(path string, out any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config %s: %w", path, err)
	}
	if err := Load(data, out); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Load is LoadFile for bytes.
func Load(data []byte, out any) error {
	if err := yaml.UnmarshalStrict(data, out); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if v, ok := out.(Validator); ok {
		if err := v.Validate(); err != nil {
			return fmt.Errorf("invalid: %w", err)
		}
	}
	return nil
}
