package hostagent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
)

// Where a host name came from.
const (
	SourceFlag     = "flag"
	SourceNovaConf = "nova.conf"
	SourceHostname = "hostname"
)

// NovaConfHost reads the [DEFAULT] host option of a nova.conf the way
// oslo.config's parser does: '#' and ';' start comment lines, an indented
// line continues the previous value, "key = value" and "key: value" both
// assign, matching quotes around a value are removed, a later assignment
// wins, and section names are case-sensitive. Inline comments are part of
// the value (as in oslo.config). found is false when no non-empty host is
// set in [DEFAULT].
func NovaConfHost(r io.Reader) (host string, found bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	section := ""
	var key string
	var value []string
	flush := func() {
		if key != "" && section == "DEFAULT" && key == "host" {
			v := strings.Join(value, "\n")
			host, found = v, v != ""
		}
		key, value = "", nil
	}
	lineno := 0
	for sc.Scan() {
		lineno++
		line := strings.TrimRight(sc.Text(), " \t\r")
		if lineno == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		switch {
		case line == "":
			flush()
			continue
		case line[0] == ' ' || line[0] == '\t':
			if key == "" {
				return "", false, fmt.Errorf("line %d: continuation line without an option", lineno)
			}
			value = append(value, strings.TrimLeft(line, " \t"))
			continue
		}
		flush()
		switch {
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 || strings.TrimSpace(line[1:end]) == "" {
				return "", false, fmt.Errorf("line %d: bad section header %q", lineno, line)
			}
			section = strings.TrimSpace(line[1:end])
		case line[0] == '#' || line[0] == ';':
		default:
			i := strings.IndexAny(line, "=:")
			if i < 0 {
				return "", false, fmt.Errorf("line %d: %q is neither an option nor a section", lineno, line)
			}
			key = strings.TrimSpace(line[:i])
			if key == "" {
				return "", false, fmt.Errorf("line %d: option without a name", lineno)
			}
			v := strings.TrimSpace(line[i+1:])
			if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
				v = v[1 : len(v)-1]
			}
			value = []string{v}
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, err
	}
	flush()
	return host, found, nil
}

// NameSources are what DiscoverName reads from.
type NameSources struct {
	// Flag is the configured name (--host, LEDGERFENCE_HOST, file); it wins.
	Flag string
	// NovaConfs are read in order; the last one that sets [DEFAULT] host wins.
	NovaConfs []string
	// Required makes a missing nova.conf an error (it was named, not defaulted).
	Required bool
	// Open opens a file (os.Open in a program).
	Open func(string) (io.ReadCloser, error)
	// Hostname is os.Hostname in a program.
	Hostname func() (string, error)
}

// DiscoverName works out the host's name as Nova knows it: the configured
// name, else nova.conf's [DEFAULT] host, else the system hostname (Nova's own
// default). It returns the name, where it came from, and a validation error
// from pkg/filter if the name cannot be a host name.
func DiscoverName(src NameSources) (name, source string, err error) {
	defer func() {
		if err == nil {
			if verr := filter.ValidateHostName(name); verr != nil {
				err = fmt.Errorf("host name from %s: %w", source, verr)
			}
		}
	}()
	if src.Flag != "" {
		return src.Flag, SourceFlag, nil
	}
	var fromConf, confPath string
	for _, p := range src.NovaConfs {
		f, err := src.Open(p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && !src.Required {
				continue
			}
			return "", "", fmt.Errorf("nova.conf: %w", err)
		}
		h, ok, err := NovaConfHost(f)
		f.Close()
		if err != nil {
			return "", "", fmt.Errorf("nova.conf %s: %w", p, err)
		}
		if ok {
			fromConf, confPath = h, p
		}
	}
	if fromConf != "" {
		return fromConf, SourceNovaConf + " " + confPath, nil
	}
	h, err := src.Hostname()
	if err != nil {
		return "", "", fmt.Errorf("hostname: %w", err)
	}
	return h, SourceHostname, nil
}
