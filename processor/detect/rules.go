// Package detect evaluates detection rules over audit events: the
// stateless half of what Falco's k8saudit rules, GuardDuty for EKS and
// managed consoles' alarm policies do. A rule is data (YAML): an id, a
// description, a severity, a MITRE ATT&CK technique, the stages it looks
// at, a condition in CEL (the expression language Kubernetes uses for
// admission policies) over the event as the apiserver sent it, and
// exceptions. The processor runs the rules before its policy lowers an
// event's level, because detections need bodies the store may not keep.
//
// A shipped default set is embedded (rules/default.yaml); a user file adds
// rules or replaces shipped ones by id; the fleet registry enables and
// disables rules per cluster.
package detect

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"
	"go.yaml.in/yaml/v3"
)

// DefaultRulesName is the name the shipped rules file is reported under.
const DefaultRulesName = "detect/rules/default.yaml"

//go:embed rules/default.yaml
var defaultRules []byte

// DefaultRules returns the shipped rules file.
func DefaultRules() []byte { return bytes.Clone(defaultRules) }

// Severities, lowest first.
const (
	SeverityInfo     = "info"
	SeverityLow      = "low"
	SeverityMedium   = "medium"
	SeverityHigh     = "high"
	SeverityCritical = "critical"
)

var severities = []string{SeverityInfo, SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}

// Stages of an audit event.
var stages = []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}

// DefaultStages are the stages a rule looks at unless it says otherwise:
// the event once the request was handled carries the decision, the
// response code and, at RequestResponse, the created object. Falco's
// k8saudit rules make the same choice.
var DefaultStages = []string{"ResponseComplete"}

var (
	ruleID    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	technique = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})?$`)
)

// Rule is one compiled detection rule. It is immutable.
type Rule struct {
	ID          string
	Description string
	Severity    string
	// Technique is a MITRE ATT&CK technique id (T1611, T1552.007), or
	// empty when none applies.
	Technique string
	Stages    []string
	Enabled   bool
	Condition string
	Exceptions
	// Source is file:line of the rule, for error messages and listings.
	Source string

	stageMask  uint8
	prg        cel.Program
	prefilters []prefilter
}

// Exceptions are requests a rule never matches.
type Exceptions struct {
	// Users are user names, matched exactly.
	Users []string `yaml:"users"`
	// Namespaces are objectRef namespaces.
	Namespaces []string `yaml:"namespaces"`
	// ServiceAccounts are "namespace/name" or "namespace/*" of the
	// requesting service account.
	ServiceAccounts []string `yaml:"serviceAccounts"`
}

// ruleYAML is the file form of a rule.
type ruleYAML struct {
	ID          string     `yaml:"id"`
	Description string     `yaml:"description"`
	Severity    string     `yaml:"severity"`
	Technique   string     `yaml:"technique"`
	Stages      []string   `yaml:"stages"`
	Enabled     *bool      `yaml:"enabled"`
	Condition   string     `yaml:"condition"`
	Exceptions  Exceptions `yaml:"exceptions"`
}

var (
	fileKeys      = []string{"rules"}
	ruleKeys      = []string{"id", "description", "severity", "technique", "stages", "enabled", "condition", "exceptions"}
	exceptionKeys = []string{"users", "namespaces", "serviceAccounts"}
)

// Source is one rules file.
type Source struct {
	Name string
	Data []byte
}

// ReadSource reads a rules file from disk.
func ReadSource(path string) (Source, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Source{}, fmt.Errorf("read rules: %w", err)
	}
	return Source{Name: path, Data: b}, nil
}

// Load compiles the rules of the sources in order; a rule whose id is
// already defined by an earlier source replaces it (a user file tunes a
// shipped rule by redefining it), within one source ids must be unique.
// Errors name the file, line and rule.
func Load(sources ...Source) (*Set, error) {
	env, err := newEnv()
	if err != nil {
		return nil, fmt.Errorf("detect: CEL environment: %w", err)
	}
	var rules []*Rule
	index := map[string]int{}
	for _, src := range sources {
		parsed, err := parse(env, src)
		if err != nil {
			return nil, err
		}
		for _, r := range parsed {
			if i, ok := index[r.ID]; ok {
				rules[i] = r
				continue
			}
			index[r.ID] = len(rules)
			rules = append(rules, r)
		}
	}
	return newSet(rules), nil
}

// LoadDefault compiles the shipped rules, then the user's rules file when
// userFile is not empty.
func LoadDefault(userFile string) (*Set, error) {
	srcs := []Source{{Name: DefaultRulesName, Data: defaultRules}}
	if userFile != "" {
		src, err := ReadSource(userFile)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	return Load(srcs...)
}

func parse(env *cel.Env, src Source) ([]*Rule, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src.Data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Name, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil // an empty file has no rules
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: want a mapping with key rules", src.Name, root.Line)
	}
	if err := checkKeys(src.Name, "", root, fileKeys); err != nil {
		return nil, err
	}
	var seq *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "rules" {
			seq = root.Content[i+1]
		}
	}
	if seq == nil || (seq.Kind == yaml.ScalarNode && seq.Tag == "!!null") {
		return nil, nil
	}
	if seq.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s:%d: rules: want a list", src.Name, seq.Line)
	}
	var rules []*Rule
	seen := map[string]int{}
	for i, n := range seq.Content {
		r, err := compileRule(env, src.Name, i, n)
		if err != nil {
			return nil, err
		}
		if line, dup := seen[r.ID]; dup {
			return nil, fmt.Errorf("%s:%d: rule %s: id already defined at line %d", src.Name, n.Line, r.ID, line)
		}
		seen[r.ID] = n.Line
		rules = append(rules, r)
	}
	return rules, nil
}

// checkKeys rejects keys of mapping n that are not in known.
func checkKeys(file, where string, n *yaml.Node, known []string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !slices.Contains(known, k.Value) {
			return fmt.Errorf("%s:%d:%d: %sunknown key %q (known: %s)", file, k.Line, k.Column, where, k.Value, strings.Join(known, ", "))
		}
	}
	return nil
}

func compileRule(env *cel.Env, file string, i int, n *yaml.Node) (*Rule, error) {
	where := fmt.Sprintf("rules[%d]: ", i)
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: %swant a mapping", file, n.Line, where)
	}
	var id string
	var cond, exc *yaml.Node
	for j := 0; j+1 < len(n.Content); j += 2 {
		switch n.Content[j].Value {
		case "id":
			id = n.Content[j+1].Value
		case "condition":
			cond = n.Content[j+1]
		case "exceptions":
			exc = n.Content[j+1]
		}
	}
	if id != "" {
		where = fmt.Sprintf("rule %s: ", id)
	}
	if err := checkKeys(file, where, n, ruleKeys); err != nil {
		return nil, err
	}
	if exc != nil && exc.Kind == yaml.MappingNode {
		if err := checkKeys(file, where+"exceptions: ", exc, exceptionKeys); err != nil {
			return nil, err
		}
	}
	var ry ruleYAML
	if err := n.Decode(&ry); err != nil {
		return nil, fmt.Errorf("%s:%d: %s%w", file, n.Line, where, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s:%d: %s%s", file, n.Line, where, fmt.Sprintf(format, args...))
	}
	switch {
	case !ruleID.MatchString(ry.ID):
		return nil, bad("id %q: want 1-63 characters of a-z 0-9 -, starting and ending with a letter or digit", ry.ID)
	case strings.TrimSpace(ry.Description) == "":
		return nil, bad("description: must not be empty")
	case !slices.Contains(severities, ry.Severity):
		return nil, bad("severity %q: want one of %s", ry.Severity, strings.Join(severities, ", "))
	case ry.Technique != "" && !technique.MatchString(ry.Technique):
		return nil, bad("technique %q: want a MITRE ATT&CK technique id such as T1611 or T1552.007", ry.Technique)
	case strings.TrimSpace(ry.Condition) == "":
		return nil, bad("condition: must not be empty")
	}
	for _, sa := range ry.Exceptions.ServiceAccounts {
		if ns, name, ok := strings.Cut(sa, "/"); !ok || ns == "" || name == "" {
			return nil, bad("exceptions.serviceAccounts: %q: want namespace/name or namespace/*", sa)
		}
	}
	r := &Rule{ID: ry.ID, Description: strings.TrimSpace(ry.Description), Severity: ry.Severity, Technique: ry.Technique,
		Stages: ry.Stages, Enabled: ry.Enabled == nil || *ry.Enabled, Condition: ry.Condition, Exceptions: ry.Exceptions,
		Source: fmt.Sprintf("%s:%d", file, n.Line)}
	if len(r.Stages) == 0 {
		r.Stages = DefaultStages
	}
	for _, s := range r.Stages {
		k := slices.Index(stages, s)
		if k < 0 {
			return nil, bad("stages: %q: want some of %s", s, strings.Join(stages, ", "))
		}
		r.stageMask |= 1 << k
	}
	prg, pf, err := compileCondition(env, r.Condition)
	if err != nil {
		line := cond.Line
		if cond.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			line++ // a block scalar starts on the line after its indicator
		}
		return nil, fmt.Errorf("%s:%d: %scondition: %w", file, line, where, err)
	}
	r.prg, r.prefilters = prg, pf
	return r, nil
}

func compileCondition(env *cel.Env, src string) (cel.Program, []prefilter, error) {
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, nil, errors.New(strings.TrimSpace(iss.Err().Error()))
	}
	if ast.OutputType() != cel.BoolType {
		return nil, nil, fmt.Errorf("evaluates to %s, want bool", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, nil, err
	}
	return prg, prefilters(ast), nil
}

// Set is a compiled, immutable list of rules, safe for concurrent use.
type Set struct {
	rules []*Rule
}

func newSet(rules []*Rule) *Set { return &Set{rules: rules} }

// Rules returns the rules in file order (enabled or not).
func (s *Set) Rules() []*Rule {
	if s == nil {
		return nil
	}
	return slices.Clone(s.rules)
}

// Enabled returns the ids of the enabled rules.
func (s *Set) Enabled() []string {
	var ids []string
	for _, r := range s.Rules() {
		if r.Enabled {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// WithOverrides returns a copy of s with the rules of enable switched on
// and those of disable switched off (a cluster's override from the fleet
// registry). An id that names no rule is an error: a typo must not leave
// a rule running that someone meant to switch off.
func (s *Set) WithOverrides(enable, disable []string) (*Set, error) {
	byID := map[string]bool{}
	for _, r := range s.rules {
		byID[r.ID] = true
	}
	var unknown []string
	for _, id := range slices.Concat(enable, disable) {
		if !byID[id] {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown rule ids %s", strings.Join(unknown, ", "))
	}
	for _, id := range enable {
		if slices.Contains(disable, id) {
			return nil, fmt.Errorf("rule %s is both enabled and disabled", id)
		}
	}
	out := make([]*Rule, len(s.rules))
	for i, r := range s.rules {
		switch {
		case slices.Contains(enable, r.ID) && !r.Enabled, slices.Contains(disable, r.ID) && r.Enabled:
			c := *r
			c.Enabled = !r.Enabled
			out[i] = &c
		default:
			out[i] = r
		}
	}
	return newSet(out), nil
}

// Fleet is the rule set of every cluster: Default, unless Clusters has
// the cluster's own (the default with the cluster's overrides applied).
// It is immutable once built.
type Fleet struct {
	Default  *Set
	Clusters map[string]*Set
}

// For returns the rules of cluster; nil (no rules) on a nil Fleet.
func (f *Fleet) For(cluster string) *Set {
	if f == nil {
		return nil
	}
	if s, ok := f.Clusters[cluster]; ok {
		return s
	}
	return f.Default
}
