package filter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Any is the wildcard for a rule's country or organisation.
const Any = "*"

// seedAll is the seed paper's spelling of the wildcard, accepted on input.
const seedAll = "All"

// Rule allows one organisation in one country; either may be Any.
type Rule struct {
	Country      string `json:"country"`
	Organization string `json:"organization"`
}

func (r Rule) String() string { return r.Country + "." + r.Organization }

func compareRules(a, b Rule) int {
	if c := strings.Compare(a.Country, b.Country); c != 0 {
		return c
	}
	return strings.Compare(a.Organization, b.Organization)
}

// Regulation says where the data of a subject (a VM or a project) may go.
type Regulation struct {
	Subject Subject `json:"subject"`
	Allow   []Rule  `json:"allow"`
	// Owner is the identity that first wrote the regulation.
	Owner string `json:"owner,omitempty"`
	// Version counts the changes of the regulation, from 1.
	Version uint64 `json:"version,omitempty"`
	// RequireAttested denies, for this subject, every host whose facts no
	// second organisation has attested (HostUnattested).
	RequireAttested bool `json:"require_attested,omitempty"`
	// Project is the project of a vm: subject, when its writer named it.
	Project string `json:"project,omitempty"`
}

// Terms are what a regulation's writer says: the rules, whether the hosts'
// facts must be attested, and (for a VM) its project.
type Terms struct {
	Allow           []Rule `json:"allow"`
	RequireAttested bool   `json:"require_attested,omitempty"`
	Project         string `json:"project,omitempty"`
}

// Terms returns the regulation's terms.
func (r *Regulation) Terms() Terms {
	return Terms{Allow: r.Allow, RequireAttested: r.RequireAttested, Project: r.Project}
}

// Equal reports whether t and u say the same (both normalised).
func (t Terms) Equal(u Terms) bool {
	return t.RequireAttested == u.RequireAttested && t.Project == u.Project && slices.Equal(t.Allow, u.Allow)
}

// NormalizeTerms validates t for subject and returns it in canonical form:
// the rules as NormalizeRules makes them, the project id as
// NormalizeProjectID does. Only a vm: subject names a project.
func NormalizeTerms(subject Subject, t Terms) (Terms, error) {
	allow, err := NormalizeRules(t.Allow)
	if err != nil {
		return Terms{}, err
	}
	out := Terms{Allow: allow, RequireAttested: t.RequireAttested}
	if t.Project != "" {
		if subject.Kind() != KindVM {
			return Terms{}, invalid("project", "only a vm: regulation names its project")
		}
		if out.Project, err = NormalizeProjectID(t.Project); err != nil {
			return Terms{}, err
		}
	}
	return out, nil
}

// Subject kinds.
const (
	KindVM      = "vm"
	KindProject = "project"
)

// Subject names what a regulation applies to: "vm:<instance uuid>" or
// "project:<project id>".
type Subject string

// VMSubject and ProjectSubject build subjects without validation.
func VMSubject(uuid string) Subject    { return Subject(KindVM + ":" + uuid) }
func ProjectSubject(id string) Subject { return Subject(KindProject + ":" + id) }

// Kind returns "vm" or "project" ("" for an invalid subject).
func (s Subject) Kind() string {
	k, _, _ := strings.Cut(string(s), ":")
	return k
}

// ID returns the part after the kind.
func (s Subject) ID() string {
	_, id, _ := strings.Cut(string(s), ":")
	return id
}

// ParseSubject validates s and returns it in canonical form (a VM's UUID in
// lower case).
func ParseSubject(s string) (Subject, error) {
	kind, id, ok := strings.Cut(s, ":")
	if !ok {
		return "", invalid("subject", "%q is neither vm:<instance uuid> nor project:<project id>", Clip(s))
	}
	switch kind {
	case KindVM:
		u, err := NormalizeUUID(id)
		if err != nil {
			return "", invalid("subject", "vm: %v", err)
		}
		return VMSubject(u), nil
	case KindProject:
		p, err := NormalizeProjectID(id)
		if err != nil {
			return "", err
		}
		return ProjectSubject(p), nil
	}
	return "", invalid("subject", "unknown kind %q: want vm:<instance uuid> or project:<project id>", Clip(kind))
}

// NormalizeUUID checks that u is a UUID, in its 8-4-4-4-12 hex form or as
// 32 hex digits, in any case and with surrounding space, and returns it in
// its canonical form: 8-4-4-4-12, lower case.
func NormalizeUUID(u string) (string, error) {
	t := strings.TrimSpace(u)
	var b [36]byte
	switch len(t) {
	case 36:
		copy(b[:], t)
	case 32:
		copy(b[0:8], t[0:8])
		copy(b[9:13], t[8:12])
		copy(b[14:18], t[12:16])
		copy(b[19:23], t[16:20])
		copy(b[24:36], t[20:32])
		b[8], b[13], b[18], b[23] = '-', '-', '-', '-'
	default:
		return "", fmt.Errorf("%q is not a UUID", Clip(u))
	}
	for i, c := range b {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", fmt.Errorf("%q is not a UUID", Clip(u))
			}
		default:
			if c >= 'A' && c <= 'F' {
				c += 'a' - 'A'
				b[i] = c
			}
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return "", fmt.Errorf("%q is not a UUID", Clip(u))
			}
		}
	}
	return string(b[:]), nil
}

// NormalizeProjectID checks a project id and returns it in canonical form:
// without surrounding space, and, when it is hexadecimal as Keystone's ids
// are, in lower case and without dashes (a UUID written 8-4-4-4-12 is the
// same id as its 32 hex digits), so that Nova's spelling and a regulation's
// meet. Other ids are kept as they are: Keystone's identity backends may
// issue ids whose case matters.
func NormalizeProjectID(id string) (string, error) {
	t := strings.TrimSpace(id)
	if err := validateCode("project_id", t, MaxOrganizationLen); err != nil {
		return "", err
	}
	if u, err := NormalizeUUID(t); err == nil {
		return strings.ReplaceAll(u, "-", ""), nil
	}
	hex, upper := true, false
	for i := 0; i < len(t) && hex; i++ {
		c := t[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c == '-':
		case c >= 'A' && c <= 'F':
			upper = true
		default:
			hex = false
		}
	}
	if hex && upper {
		return strings.ToLower(t), nil
	}
	return t, nil
}

// NormalizeRules validates rules and returns them in canonical form: Any for
// the seed's "All", countries in upper case, sorted, without duplicates.
func NormalizeRules(rules []Rule) ([]Rule, error) {
	if len(rules) == 0 {
		return nil, invalid("allow", "at least one rule is required (delete the regulation to lift it)")
	}
	if len(rules) > MaxRules {
		return nil, invalid("allow", "at most %d rules are allowed, got %d", MaxRules, len(rules))
	}
	out := make([]Rule, 0, len(rules))
	for i, r := range rules {
		c, err := NormalizeCountry(r.Country, true)
		if err != nil {
			return nil, invalid(fmt.Sprintf("allow[%d].country", i), "%q is not an ISO 3166-1 alpha-2 country code, * or All", Clip(r.Country))
		}
		o := r.Organization
		if o == Any || strings.EqualFold(o, seedAll) {
			o = Any
		} else if err := validateCode(fmt.Sprintf("allow[%d].organization", i), o, MaxOrganizationLen); err != nil {
			return nil, err
		}
		out = append(out, Rule{Country: c, Organization: o})
	}
	slices.SortFunc(out, compareRules)
	return slices.Compact(out), nil
}

// regulationInput accepts the three input forms of a regulation. Owner,
// version and subject are tolerated so that a stored regulation can be sent
// back as it was read; they are not taken from input.
type regulationInput struct {
	Allow           json.RawMessage `json:"allow"`
	Countries       []string        `json:"countries"`
	Organizations   []string        `json:"organizations"`
	RequireAttested bool            `json:"require_attested"`
	Project         string          `json:"project"`
	Subject         json.RawMessage `json:"subject"`
	Owner           json.RawMessage `json:"owner"`
	Version         json.RawMessage `json:"version"`
}

// ParseTerms reads a regulation body in any of its three input forms, each
// with the optional "require_attested" and (for a VM) "project", and
// returns its terms; the rules normalised, the project as given
// (NormalizeTerms checks it against the subject):
//
//	{"allow": [{"country": "JP", "organization": "CompanyA"}]}
//	{"countries": ["JP", "GB"], "organizations": ["CompanyA", "CompanyB"]}
//	{"allow": ["JP.CompanyA", "GB.All"]}
func ParseTerms(data []byte) (Terms, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var in regulationInput
	if err := dec.Decode(&in); err != nil {
		return Terms{}, invalid("", "regulation is not a JSON object of a known form: %v", clipErr(err))
	}
	if dec.More() {
		return Terms{}, invalid("", "regulation has trailing data after the JSON object")
	}
	rules, err := in.rules()
	if err != nil {
		return Terms{}, err
	}
	return Terms{Allow: rules, RequireAttested: in.RequireAttested, Project: in.Project}, nil
}

func (in *regulationInput) rules() ([]Rule, error) {
	hasAllow := len(in.Allow) > 0 && !bytes.Equal(bytes.TrimSpace(in.Allow), []byte("null"))
	hasLists := in.Countries != nil || in.Organizations != nil
	switch {
	case hasAllow && hasLists:
		return nil, invalid("", "give either allow or countries and organizations, not both")
	case hasLists:
		if len(in.Countries) == 0 || len(in.Organizations) == 0 {
			return nil, invalid("", "countries and organizations must both be non-empty")
		}
		if len(in.Countries) > MaxListLen || len(in.Organizations) > MaxListLen {
			return nil, invalid("", "at most %d countries and %d organizations are allowed", MaxListLen, MaxListLen)
		}
		rules := make([]Rule, 0, len(in.Countries)*len(in.Organizations))
		for _, c := range in.Countries {
			for _, o := range in.Organizations {
				rules = append(rules, Rule{Country: c, Organization: o})
			}
		}
		return NormalizeRules(rules)
	case hasAllow:
		return parseAllow(in.Allow)
	}
	return nil, invalid("", "regulation needs allow, or countries and organizations")
}

func parseAllow(raw json.RawMessage) ([]Rule, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, invalid("allow", "must be a list")
	}
	if len(items) > MaxRules {
		return nil, invalid("allow", "at most %d rules are allowed, got %d", MaxRules, len(items))
	}
	rules := make([]Rule, 0, len(items))
	for i, it := range items {
		it = bytes.TrimSpace(it)
		switch {
		case len(it) > 0 && it[0] == '"':
			var id string
			if err := json.Unmarshal(it, &id); err != nil {
				return nil, invalid(fmt.Sprintf("allow[%d]", i), "not a string")
			}
			c, o, ok := strings.Cut(id, ".")
			if !ok {
				return nil, invalid(fmt.Sprintf("allow[%d]", i), "%q is not CountryCode.OrganizationCode", Clip(id))
			}
			rules = append(rules, Rule{Country: c, Organization: o})
		case len(it) > 0 && it[0] == '{':
			dec := json.NewDecoder(bytes.NewReader(it))
			dec.DisallowUnknownFields()
			var r Rule
			if err := dec.Decode(&r); err != nil {
				return nil, invalid(fmt.Sprintf("allow[%d]", i), "want {\"country\", \"organization\"}: %v", clipErr(err))
			}
			rules = append(rules, r)
		default:
			return nil, invalid(fmt.Sprintf("allow[%d]", i), "want an object or a \"CC.Organization\" string")
		}
	}
	return NormalizeRules(rules)
}

// clip shortens s for an error message.
// ClipLen is how much of a client's text a message, a log line or a stored
// decision repeats.
const ClipLen = 128

// Clip bounds text a client sent to ClipLen bytes, cutting at a character
// boundary and marking the cut with "...", so that it can be echoed in a
// message, a log line or a stored decision.
func Clip(s string) string {
	if len(s) <= ClipLen {
		return s
	}
	n := ClipLen
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

func clipErr(err error) string { return Clip(err.Error()) }
