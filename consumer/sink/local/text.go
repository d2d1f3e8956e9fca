package local

import (
	"github.com/auditpipe/auditpipe/consumer/internal/flatten"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// indexWords renders the full-text index rows of the JSON document js
// (events_words): text holds the words of every value the apiserver sent,
// CLS's full text (auditpipe's own fields and object keys are left out:
// every event has the same keys, and "webhook" must not match every event
// through auditpipe.source); kv holds each key's tag alone (the key is
// present) and before each of its words (key:word), for every key but the
// few that columns answer (see field.inKV). Words are CLS's (cql.Words),
// encoded so FTS5 keeps them whole (appendFTSWord).
func indexWords(js []byte, text, kv []byte) ([]byte, []byte, error) {
	var words []string
	err := flatten.Walk(js, func(key, value string, _ flatten.Kind) error {
		words = cql.AppendWords(words[:0], value)
		if !ownField(key) {
			for _, w := range words {
				text = appendFTSWord(text, w)
				text = append(text, ' ')
			}
			text = append(text, valueBreak+" "...)
		}
		if f := lookupField(key); f.inKV() {
			tag := keyTag(key)
			kv = append(kv, tag...)
			kv = append(kv, ' ')
			for _, w := range words {
				kv = append(kv, tag...)
				kv = appendFTSWord(kv, w)
				kv = append(kv, ' ')
			}
		}
		return nil
	})
	return text, kv, err
}
