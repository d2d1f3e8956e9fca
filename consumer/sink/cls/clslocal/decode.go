package clslocal

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"google.golang.org/protobuf/encoding/protowire"
)

// decompress decodes body according to the x-cls-compress-type header.
// limit caps the decoded size, so that a small bomb cannot take the
// server's memory.
func decompress(kind string, body []byte, limit int) ([]byte, error) {
	switch kind {
	case "":
		return body, nil
	case "lz4":
		// A raw LZ4 block carries no decoded size: grow the buffer until it
		// fits. LZ4 expands at most ~255x.
		size := max(4*len(body), 64<<10)
		for {
			size = min(size, limit)
			dst := make([]byte, size)
			n, err := lz4.UncompressBlock(body, dst)
			if err == nil {
				return dst[:n], nil
			}
			if size >= limit {
				return nil, fmt.Errorf("lz4 block: %w (or larger than %d bytes decoded)", err, limit)
			}
			size *= 4
		}
	case "zstd":
		d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(limit)), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer d.Close()
		out, err := d.DecodeAll(body, nil)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		if len(out) > limit {
			return nil, fmt.Errorf("zstd: more than %d bytes decoded", limit)
		}
		return out, nil
	case "deflate":
		r := flate.NewReader(bytes.NewReader(body))
		defer r.Close()
		out, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
		if err != nil {
			return nil, fmt.Errorf("deflate: %w", err)
		}
		if len(out) > limit {
			return nil, fmt.Errorf("deflate: more than %d bytes decoded", limit)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unsupported x-cls-compress-type %q (want lz4, zstd or deflate)", kind)
	}
}

// LogGroup is one decoded LogGroup of a request.
type LogGroup struct {
	Logs        []Log
	ContextFlow string
	Filename    string
	Source      string
	Hostname    string
	Tags        []Content
}

// Log is one decoded log.
type Log struct {
	// Time is the log time as sent: CLS accepts seconds or milliseconds.
	Time        int64
	CollectTime int64
	Contents    []Content
}

// Content is one key/value of a log.
type Content struct {
	Key, Value string
}

// Get returns the value of the first content named key.
func (l Log) Get(key string) (string, bool) {
	for _, c := range l.Contents {
		if c.Key == key {
			return c.Value, true
		}
	}
	return "", false
}

// decodeLogGroupList decodes the protobuf LogGroupList of cls.proto. It is
// written against the wire format rather than generated from cls.proto on
// purpose: it must not share code with the SDK whose output it checks.
func decodeLogGroupList(b []byte) ([]LogGroup, error) {
	var groups []LogGroup
	err := fields(b, "LogGroupList", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num != 1 {
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("LogGroupList.logGroupList: wire type %d, want bytes", typ)
		}
		g, err := decodeLogGroup(v)
		if err != nil {
			return fmt.Errorf("logGroupList[%d]: %w", len(groups), err)
		}
		groups = append(groups, g)
		return nil
	})
	return groups, err
}

func decodeLogGroup(b []byte) (LogGroup, error) {
	var g LogGroup
	err := fields(b, "LogGroup", func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num >= 1 && num <= 6 && typ != protowire.BytesType {
			return fmt.Errorf("LogGroup field %d: wire type %d, want bytes", num, typ)
		}
		switch num {
		case 1:
			l, err := decodeLog(v)
			if err != nil {
				return fmt.Errorf("logs[%d]: %w", len(g.Logs), err)
			}
			g.Logs = append(g.Logs, l)
		case 2:
			g.ContextFlow = string(v)
		case 3:
			g.Filename = string(v)
		case 4:
			g.Source = string(v)
		case 5:
			t, err := decodeContent(v, "LogTag")
			if err != nil {
				return fmt.Errorf("logTags[%d]: %w", len(g.Tags), err)
			}
			g.Tags = append(g.Tags, t)
		case 6:
			g.Hostname = string(v)
		}
		return nil
	})
	return g, err
}

func decodeLog(b []byte) (Log, error) {
	var l Log
	var haveTime bool
	err := fields(b, "Log", func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch num {
		case 1, 3:
			if typ != protowire.VarintType {
				return fmt.Errorf("Log field %d: wire type %d, want varint", num, typ)
			}
			if num == 1 {
				l.Time, haveTime = int64(n), true
			} else {
				l.CollectTime = int64(n)
			}
		case 2:
			if typ != protowire.BytesType {
				return fmt.Errorf("field Log.contents: wire type %d, want bytes", typ)
			}
			c, err := decodeContent(v, "Log.Content")
			if err != nil {
				return fmt.Errorf("contents[%d]: %w", len(l.Contents), err)
			}
			l.Contents = append(l.Contents, c)
		}
		return nil
	})
	if err == nil && !haveTime {
		err = errors.New("message Log: required field time missing")
	}
	return l, err
}

func decodeContent(b []byte, msg string) (Content, error) {
	var c Content
	var haveKey, haveValue bool
	err := fields(b, msg, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if (num == 1 || num == 2) && typ != protowire.BytesType {
			return fmt.Errorf("%s field %d: wire type %d, want bytes", msg, num, typ)
		}
		switch num {
		case 1:
			c.Key, haveKey = string(v), true
		case 2:
			c.Value, haveValue = string(v), true
		}
		return nil
	})
	switch {
	case err != nil:
		return c, err
	case !haveKey:
		return c, fmt.Errorf("%s: required field key missing", msg)
	case !haveValue:
		return c, fmt.Errorf("%s %q: required field value missing", msg, c.Key)
	}
	return c, nil
}

// fields walks the fields of one message. For bytes fields v is the
// payload, for varints n is the value; other wire types are skipped.
func fields(b []byte, msg string, f func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, tl := protowire.ConsumeTag(b)
		if tl < 0 {
			return fmt.Errorf("%s: bad tag: %w", msg, protowire.ParseError(tl))
		}
		b = b[tl:]
		var (
			v  []byte
			n  uint64
			vl int
		)
		switch typ {
		case protowire.BytesType:
			v, vl = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n, vl = protowire.ConsumeVarint(b)
		default:
			vl = protowire.ConsumeFieldValue(num, typ, b)
		}
		if vl < 0 {
			return fmt.Errorf("%s field %d: %w", msg, num, protowire.ParseError(vl))
		}
		b = b[vl:]
		if err := f(num, typ, v, n); err != nil {
			return err
		}
	}
	return nil
}
