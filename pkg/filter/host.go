package filter

import (
	"fmt"
	"slices"
	"strings"
)

// Limits on what a host record or a regulation may hold.
const (
	MaxHostNameLen       = 255
	MaxOrganizationLen   = 64
	MaxRegionLen         = 64
	MaxHostOrganizations = 64
	MaxRules             = 4096
	MaxListLen           = 256
)

// Host is what the ledger knows of a compute host.
type Host struct {
	// Name is the name Nova's scheduler uses for the compute service
	// (HostState.host, nova.conf [DEFAULT] host).
	Name string `json:"host"`
	// Country is an ISO 3166-1 alpha-2 code, upper case.
	Country string `json:"country"`
	// Organizations are the organisations operating the host, sorted, no duplicates.
	Organizations []string `json:"organizations"`
	// Region is an optional free label (Nova region, data centre).
	Region string `json:"region,omitempty"`
}

// ValidationError says which field of an input is wrong and why. Its text is
// safe to show to a client.
type ValidationError struct {
	Field string
	Msg   string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// NormalizeHost validates h and returns it in canonical form: country in
// upper case, organisations sorted without duplicates. The input is not modified.
func NormalizeHost(h Host) (Host, error) {
	if err := ValidateHostName(h.Name); err != nil {
		return Host{}, err
	}
	c, err := NormalizeCountry(h.Country, false)
	if err != nil {
		return Host{}, err
	}
	if len(h.Organizations) == 0 {
		return Host{}, invalid("organizations", "at least one organisation is required")
	}
	if len(h.Organizations) > MaxHostOrganizations {
		return Host{}, invalid("organizations", "at most %d organisations are allowed, got %d", MaxHostOrganizations, len(h.Organizations))
	}
	orgs := make([]string, 0, len(h.Organizations))
	for _, o := range h.Organizations {
		if err := validateCode("organizations", o, MaxOrganizationLen); err != nil {
			return Host{}, err
		}
		if o == Any || strings.EqualFold(o, seedAll) {
			return Host{}, invalid("organizations", "%q is a wildcard and cannot operate a host", o)
		}
		orgs = append(orgs, o)
	}
	slices.Sort(orgs)
	orgs = slices.Compact(orgs)
	if h.Region != "" {
		if err := validateCode("region", h.Region, MaxRegionLen); err != nil {
			return Host{}, err
		}
	}
	return Host{Name: h.Name, Country: c, Organizations: orgs, Region: h.Region}, nil
}

// Equal reports whether two normalised hosts hold the same facts.
func (h Host) Equal(o Host) bool {
	return h.Name == o.Name && h.Country == o.Country && h.Region == o.Region &&
		slices.Equal(h.Organizations, o.Organizations)
}

// ValidateHostName checks a compute host name as Nova uses it.
func ValidateHostName(name string) error {
	if name == "" {
		return invalid("host", "must not be empty")
	}
	if len(name) > MaxHostNameLen {
		return invalid("host", "longer than %d characters", MaxHostNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !codeChar(name[i]) {
			return invalid("host", "%q has a character outside [A-Za-z0-9._-]", name)
		}
	}
	return nil
}

// NormalizeCountry returns the upper-case ISO 3166-1 alpha-2 code for c. With
// wildcard set, "*" and the seed's "All" are accepted and returned as "*".
func NormalizeCountry(c string, wildcard bool) (string, error) {
	if wildcard && (c == Any || strings.EqualFold(c, seedAll)) {
		return Any, nil
	}
	u := strings.ToUpper(c)
	if !isCountry(u) {
		return "", invalid("country", "%q is not an ISO 3166-1 alpha-2 country code", c)
	}
	return u, nil
}

func validateCode(field, s string, max int) error {
	if s == "" {
		return invalid(field, "must not be empty")
	}
	if len(s) > max {
		return invalid(field, "%q is longer than %d characters", s[:16]+"...", max)
	}
	for i := 0; i < len(s); i++ {
		if !codeChar(s[i]) {
			return invalid(field, "%q has a character outside [A-Za-z0-9._-]", s)
		}
	}
	return nil
}

func codeChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-'
}
