package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/auditpipe/auditpipe/internal/durablefile"
	"io/fs"
	"os"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// checkpointVersion is bumped when the file format changes incompatibly.
const checkpointVersion = 1

// checkpoint is the durable state of a replay: the fixed range of every
// partition, the next offset to process, and the counts of everything
// below it. It is written only after the target acknowledged every record
// below Next, so a resume neither skips nor repeats.
type checkpoint struct {
	Version int    `json:"version"`
	Topic   string `json:"topic"`
	// Spec identifies the replay (window, clusters, policy, limits); a
	// resume with a different one is refused.
	Spec       string                    `json:"spec"`
	Partitions map[int32]*partitionState `json:"partitions"`
	Stats      Stats                     `json:"stats"`
}

// partitionState is one partition's fixed range and progress.
type partitionState struct {
	kafka.OffsetRange
	Next int64 `json:"next"`
}

// done reports whether every partition reached its end.
func (c *checkpoint) done() bool {
	for _, p := range c.Partitions {
		if p.Next < p.End {
			return false
		}
	}
	return true
}

// loadCheckpoint reads path; it returns (nil, nil) when the file does not
// exist.
func loadCheckpoint(path string) (*checkpoint, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	var c checkpoint
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	if c.Version != checkpointVersion {
		return nil, fmt.Errorf("read checkpoint %s: version %d, this program reads version %d", path, c.Version, checkpointVersion)
	}
	for p, st := range c.Partitions {
		if st == nil || st.Start > st.End || st.Next < st.Start || st.Next > st.End {
			return nil, fmt.Errorf("read checkpoint %s: partition %d: inconsistent range %+v", path, p, st)
		}
	}
	return &c, nil
}

// save writes the checkpoint durably (durablefile), so a crash leaves
// either the old or the new checkpoint, never a torn one.
func (c *checkpoint) save(path string) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	if err := durablefile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}
