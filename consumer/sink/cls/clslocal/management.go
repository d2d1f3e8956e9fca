package clslocal

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
)

// ManagementAPI stands in for the part of the CLS management API
// (2020-10-16: DescribeLogsets, CreateLogset, DescribeTopics, CreateTopic,
// CreateIndex) that auto-provisioning uses, with CLS's "...Conflict" errors
// for things that exist. It requires a TC3-HMAC-SHA256 Authorization header
// but does not verify the signature. Topic ids are "tp-" + topic name.
type ManagementAPI struct {
	mu      sync.Mutex
	logsets map[string]string    // name -> id
	topics  map[[2]string]string // (logsetID, name) -> id
	indexes map[string]json.RawMessage
	calls   []string
	// raceNext makes the next CreateTopic find the topic created by
	// someone else in the meantime (a conflict).
	raceNext bool
	// failWith, when set, is the error code CreateTopic answers.
	failWith string
}

// NewManagementAPI returns an empty account.
func NewManagementAPI() *ManagementAPI {
	return &ManagementAPI{logsets: map[string]string{}, topics: map[[2]string]string{}, indexes: map[string]json.RawMessage{}}
}

// AddLogset creates a logset directly (as an operator would).
func (f *ManagementAPI) AddLogset(name, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logsets[name] = id
}

// RaceNextCreateTopic makes the next CreateTopic conflict with a topic
// another creator made first, with id "tp-theirs".
func (f *ManagementAPI) RaceNextCreateTopic() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.raceNext = true
}

// FailCreateTopic makes CreateTopic answer code ("" stops it).
func (f *ManagementAPI) FailCreateTopic(code string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failWith = code
}

// Calls counts the requests of action.
func (f *ManagementAPI) Calls(action string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == action {
			n++
		}
	}
	return n
}

// Topic returns the id of a topic, if it exists.
func (f *ManagementAPI) Topic(logsetID, name string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.topics[[2]string{logsetID, name}]
	return id, ok
}

// Index returns the Rule a topic's index was created with.
func (f *ManagementAPI) Index(topicID string) (json.RawMessage, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.indexes[topicID]
	return r, ok
}

// ServeHTTP implements the API (action in X-TC-Action, JSON body).
func (f *ManagementAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	action := r.Header.Get("X-TC-Action")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req struct {
		Filters []struct {
			Key    string
			Values []string
		}
		LogsetName, LogsetId, TopicName, TopicId string
		Rule                                     json.RawMessage
	}
	filter := func(k string) string {
		for _, fl := range req.Filters {
			if fl.Key == k && len(fl.Values) > 0 {
				return fl.Values[0]
			}
		}
		return ""
	}
	reply := func(v map[string]any) {
		v["RequestId"] = "clslocal-" + action
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"Response": v})
	}
	fail := func(code string) {
		reply(map[string]any{"Error": map[string]string{"Code": code, "Message": code}})
	}
	if err := json.Unmarshal(body, &req); err != nil {
		fail("InvalidParameter")
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "TC3-HMAC-SHA256 ") {
		fail("AuthFailure.SignatureFailure")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, action)
	switch action {
	case "DescribeLogsets":
		out := []map[string]string{}
		for name, id := range f.logsets {
			if strings.Contains(name, filter("logsetName")) { // fuzzy, like CLS
				out = append(out, map[string]string{"LogsetName": name, "LogsetId": id})
			}
		}
		reply(map[string]any{"Logsets": out, "TotalCount": len(out)})
	case "CreateLogset":
		if _, ok := f.logsets[req.LogsetName]; ok {
			fail("InvalidParameter.LogsetConflict")
			return
		}
		f.logsets[req.LogsetName] = "ls-" + req.LogsetName
		reply(map[string]any{"LogsetId": "ls-" + req.LogsetName})
	case "DescribeTopics":
		out := []map[string]string{}
		if id, ok := f.topics[[2]string{filter("logsetId"), filter("topicName")}]; ok {
			out = append(out, map[string]string{"TopicName": filter("topicName"), "TopicId": id})
		}
		reply(map[string]any{"Topics": out, "TotalCount": len(out)})
	case "CreateTopic":
		k := [2]string{req.LogsetId, req.TopicName}
		if f.failWith != "" {
			fail(f.failWith)
			return
		}
		if f.raceNext {
			f.raceNext = false
			f.topics[k] = "tp-theirs"
		}
		if _, ok := f.topics[k]; ok {
			fail("InvalidParameter.TopicConflict")
			return
		}
		f.topics[k] = "tp-" + req.TopicName
		reply(map[string]any{"TopicId": "tp-" + req.TopicName})
	case "CreateIndex":
		if _, ok := f.indexes[req.TopicId]; ok {
			fail("InvalidParameter.IndexConflict")
			return
		}
		f.indexes[req.TopicId] = req.Rule
		reply(map[string]any{})
	default:
		fail("InvalidAction")
	}
}
