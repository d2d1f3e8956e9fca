package local

import (
	"unicode"
	"unicode/utf8"

	"github.com/auditpipe/auditpipe/consumer/internal/flatten"
	"github.com/auditpipe/auditpipe/consumer/search/cql"
)

// indexWords renders the full-text index rows of the compacted JSON
// document js (events_words): text holds the words of every value the
// apiserver sent, CLS's full text (auditpipe's own fields and object keys
// are left out: every event has the same keys, and "webhook" must not match
// every event through auditpipe.source); kv holds each key's tag alone (the
// key is present) and before each of its words (key:word), for the keys
// field.inKV selects. Words are CLS's (cql.Words), encoded so FTS5 keeps
// them whole (appendFTSWord). It runs for every stored event, so it writes
// straight into the buffers.
func indexWords(js []byte, text, kv []byte) ([]byte, []byte, error) {
	w := words{text: text, kv: kv}
	err := flatten.WalkCompact(js, func(key, value string, _ flatten.Kind) error {
		w.add(key, value)
		return nil
	})
	return w.text, w.kv, err
}

// words accumulates the events_words rows of one event, key by key, so
// that the store's single walk over an event (decodeRow) can compute its
// columns and its words together.
type words struct {
	text, kv []byte
	word     []byte // scratch: the word being built
}

// add appends the words of one flattened key/value (see indexWords).
func (w *words) add(key, value string) {
	inText := !ownField(key)
	inKV := lookupField(key).inKV()
	if !inText && !inKV {
		return
	}
	var tag [keyTagLen]byte
	if inKV {
		putKeyTag(&tag, key)
		w.kv = append(w.kv, tag[:]...)
		w.kv = append(w.kv, ' ')
	}
	word := w.word[:0]
	emit := func() {
		if len(word) == 0 {
			return
		}
		if inText {
			w.text = append(w.text, word...)
			w.text = append(w.text, ' ')
		}
		if inKV {
			w.kv = append(w.kv, tag[:]...)
			w.kv = append(w.kv, word...)
			w.kv = append(w.kv, ' ')
		}
		word = word[:0]
	}
	for i := 0; i < len(value); {
		c := value[i]
		if plainByte(c) {
			// A run of bytes that encode as themselves: one append.
			j := i + 1
			for j < len(value) && plainByte(value[j]) {
				j++
			}
			word = append(word, value[i:j]...)
			i = j
			continue
		}
		if c < utf8.RuneSelf {
			i++
			if cql.IsDelimiter(rune(c)) {
				emit()
				continue
			}
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			word = appendFTSByte(word, c)
			continue
		}
		r, n := utf8.DecodeRuneInString(value[i:])
		i += n
		var enc [utf8.UTFMax]byte
		m := utf8.EncodeRune(enc[:], unicode.ToLower(r))
		for _, b := range enc[:m] {
			word = appendFTSByte(word, b)
		}
	}
	emit()
	if inText {
		w.text = append(w.text, valueBreak+" "...)
	}
	w.word = word
}

// The full-text index (events_words) holds CLS's words, so that FTS5 never
// splits or joins them differently from CLS: each word is encoded into
// letters and digits that FTS5's unicode61 tokenizer keeps whole. The
// encoding is a prefix code (a..y and 0..9 stand for themselves, any other
// byte is 'z' and two hex digits), so a prefix of a word encodes to a prefix
// of its encoding and FTS5 prefix queries stay exact.
func appendFTSByte(dst []byte, c byte) []byte {
	const hex = "0123456789abcdef"
	if plainByte(c) {
		return append(dst, c)
	}
	return append(dst, 'z', hex[c>>4], hex[c&15])
}

// plainByte: c encodes as itself (and is not a delimiter).
func plainByte(c byte) bool { return c >= 'a' && c <= 'y' || c >= '0' && c <= '9' }

func appendFTSWord(dst []byte, w string) []byte {
	for i := 0; i < len(w); i++ {
		dst = appendFTSByte(dst, w[i])
	}
	return dst
}

func ftsWord(w string) string { return string(appendFTSWord(nil, w)) }

// valueBreak separates values in the full-text column, so that a phrase
// never spans two fields. No encoded word is a lone 'z'.
const valueBreak = "z"

// keyTagLen is the length of a key's tag.
const keyTagLen = 12

// putKeyTag writes the tag of key: its words in the kv column are
// tag+word, and the tag alone says the key is present. It is a 48-bit hash
// in the letters a..p (a collision between two keys of one store is
// improbable, and the compiled queries check anything the index cannot
// decide exactly).
func putKeyTag(dst *[keyTagLen]byte, key string) {
	// FNV-1a, 64 bits, written out: hash/fnv allocates per key.
	sum := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		sum ^= uint64(key[i])
		sum *= 1099511628211
	}
	for i := range dst {
		dst[i] = 'a' + byte(sum&15)
		sum >>= 4
	}
}

func keyTag(key string) string {
	var t [keyTagLen]byte
	putKeyTag(&t, key)
	return string(t[:])
}
