package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/auditpipe/auditpipe/internal/kafka"
)

// encode lays out a batch: written-at (unix ns, u64), record count (u32),
// then per record topic, key, value and headers, each length-prefixed.
func encode(at time.Time, records []kafka.Record) []byte {
	n := 12
	for _, r := range records {
		n += 2 + len(r.Topic) + 4 + len(r.Key) + 4 + len(r.Value) + 2
		for _, h := range r.Headers {
			n += 2 + len(h.Key) + 4 + len(h.Value)
		}
	}
	b := make([]byte, 0, n)
	b = binary.BigEndian.AppendUint64(b, uint64(at.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, uint32(len(records)))
	for _, r := range records {
		b = appendBytes16(b, []byte(r.Topic))
		b = appendBytes32(b, r.Key)
		b = appendBytes32(b, r.Value)
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Headers)))
		for _, h := range r.Headers {
			b = appendBytes16(b, []byte(h.Key))
			b = appendBytes32(b, h.Value)
		}
	}
	return b
}

func appendBytes16(b, v []byte) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(v))), v...)
}

func appendBytes32(b, v []byte) []byte {
	return append(binary.BigEndian.AppendUint32(b, uint32(len(v))), v...)
}

var errShort = errors.New("entry is shorter than its fields say")

type reader struct {
	b   []byte
	err error
}

func (r *reader) n(size int) []byte {
	if r.err != nil || len(r.b) < size {
		r.err = errShort
		return nil
	}
	v := r.b[:size:size]
	r.b = r.b[size:]
	return v
}

func (r *reader) u16() int {
	v := r.n(2)
	if v == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(v))
}

func (r *reader) u32() int {
	v := r.n(4)
	if v == nil {
		return 0
	}
	return int(binary.BigEndian.Uint32(v))
}

// bytes returns a length-prefixed field; nil for a zero length so an
// absent key stays absent.
func (r *reader) bytes(length int) []byte {
	v := r.n(length)
	if len(v) == 0 {
		return nil
	}
	return v
}

func decode(p []byte) (time.Time, []kafka.Record, error) {
	r := &reader{b: p}
	atb := r.n(8)
	count := r.u32()
	if r.err != nil {
		return time.Time{}, nil, r.err
	}
	at := time.Unix(0, int64(binary.BigEndian.Uint64(atb)))
	if count > len(p) {
		return at, nil, fmt.Errorf("record count %d is impossible", count)
	}
	recs := make([]kafka.Record, count)
	for i := range recs {
		recs[i].Topic = string(r.bytes(r.u16()))
		recs[i].Key = r.bytes(r.u32())
		recs[i].Value = r.bytes(r.u32())
		nh := r.u16()
		if nh > 0 && r.err == nil {
			recs[i].Headers = make([]kafka.Header, nh)
			for j := range recs[i].Headers {
				recs[i].Headers[j].Key = string(r.bytes(r.u16()))
				recs[i].Headers[j].Value = r.bytes(r.u32())
			}
		}
		if r.err != nil {
			return at, nil, fmt.Errorf("record %d: %w", i, r.err)
		}
	}
	if len(r.b) != 0 {
		return at, nil, fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return at, recs, nil
}
