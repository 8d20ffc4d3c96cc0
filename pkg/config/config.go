// Package config is the one configuration mechanism of ledgerfence's
// commands (filterd, hostagent, ledgerctl): each setting is a flag of a
// flag.FlagSet, and is also read from the environment variable
// LEDGERFENCE_<NAME> (upper case, - as _) and from the key <name> of an
// optional YAML file (--config FILE, or LEDGERFENCE_CONFIG; _ may stand for
// - in its keys).
//
// One precedence rule: a flag given on the command line wins over the
// environment, which wins over the file, which wins over the default. A
// list setting (a flag whose value implements Lister) given by a source
// replaces what a lower one gave; within a source it takes repeated flags, a
// comma-separated environment value, or a YAML list.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix prefixes the environment variable of every setting.
const EnvPrefix = "LEDGERFENCE_"

// FileFlag is the flag (and the YAML file's environment variable, with
// EnvPrefix) that names the configuration file.
const FileFlag = "config"

// Env is the environment variable of a flag: --admin-token is
// LEDGERFENCE_ADMIN_TOKEN.
func Env(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Lister is a flag value that holds a list: Reset empties it, so that a
// source replaces a lower one's list; Set appends one item.
type Lister interface {
	flag.Value
	Reset()
}

// List is a list flag over a slice: --x a --x b, LEDGERFENCE_X=a,b, or
// x: [a, b]. The first value given replaces the slice's default.
type List struct {
	items   *[]string
	touched bool
}

// NewList is a List over p, whose content is the default.
func NewList(p *[]string) *List { return &List{items: p} }

func (l *List) String() string {
	if l == nil || l.items == nil {
		return ""
	}
	return strings.Join(*l.items, ",")
}

// Set appends v's comma-separated items (after dropping the default).
func (l *List) Set(v string) error {
	if !l.touched {
		l.Reset()
	}
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l.items = append(*l.items, part)
		}
	}
	return nil
}

// Reset empties the list.
func (l *List) Reset() {
	*l.items = nil
	l.touched = true
}

// Options tune Load.
type Options struct {
	// Aliases are other names of a flag in the environment and the file
	// (alias -> flag name), kept for configurations written before a
	// rename.
	Aliases map[string]string
	// ReadFile reads the configuration file (os.ReadFile); nil: a file is
	// refused.
	ReadFile func(string) ([]byte, error)
	// Settings, when set, names the flags that are settings, read from the
	// environment and the file; the others (a command's operands) are
	// taken from the command line only.
	Settings func(name string) bool
}

// Load parses args into fs, then fills every flag not given on the command
// line from the environment (getenv) or, failing that, the YAML file named
// by --config (when fs has it) or LEDGERFENCE_CONFIG. It returns the
// positional arguments and the file read ("" for none). Errors name the
// source and the setting; flag.ErrHelp is returned as it is.
func Load(fs *flag.FlagSet, args []string, getenv func(string) string, opts Options) (file string, err error) {
	Describe(fs)
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return Apply(fs, given, getenv, opts)
}

// Apply is Load's second half, for a command that parsed its flags itself:
// given names the flags set on the command line.
func Apply(fs *flag.FlagSet, given map[string]bool, getenv func(string) string, opts Options) (file string, err error) {
	Describe(fs)
	names := map[string][]string{} // flag name -> names it is known by outside the command line
	fs.VisitAll(func(f *flag.Flag) {
		if opts.Settings == nil || opts.Settings(f.Name) {
			names[f.Name] = []string{f.Name}
		}
	})
	for alias, name := range opts.Aliases {
		if _, ok := names[name]; ok {
			names[name] = append(names[name], alias)
		}
	}
	if f := fs.Lookup(FileFlag); f != nil {
		file = f.Value.String()
	}
	if file == "" {
		file = getenv(Env(FileFlag))
	}
	var fromFile map[string]any
	if file != "" {
		if opts.ReadFile == nil {
			return file, fmt.Errorf("config file %s: this command reads no file", file)
		}
		data, err := opts.ReadFile(file)
		if err != nil {
			return file, fmt.Errorf("config file: %w", err)
		}
		if fromFile, err = parseYAML(data, names); err != nil {
			return file, fmt.Errorf("config file %s: %w", file, err)
		}
	}
	var errs []error
	keys := make([]string, 0, len(names))
	for name := range names {
		keys = append(keys, name)
	}
	sort.Strings(keys)
	for _, name := range keys {
		if given[name] || name == FileFlag {
			continue
		}
		f := fs.Lookup(name)
		if v, src, ok := fromEnv(getenv, names[name]); ok {
			if err := set(f, []string{v}); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", src, err))
			}
			continue
		}
		for _, n := range names[name] {
			if raw, ok := fromFile[n]; ok {
				vals, err := yamlValues(raw)
				if err == nil {
					err = set(f, vals)
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("config file %s: %s: %w", file, n, err))
				}
				break
			}
		}
	}
	return file, errors.Join(errs...)
}

func fromEnv(getenv func(string) string, names []string) (v, src string, ok bool) {
	for _, n := range names {
		if v := getenv(Env(n)); v != "" {
			return v, Env(n), true
		}
	}
	return "", "", false
}

// set gives f the values of one source, replacing a list.
func set(f *flag.Flag, vals []string) error {
	if l, ok := f.Value.(Lister); ok {
		l.Reset()
	} else if len(vals) != 1 {
		return errors.New("want a single value, not a list")
	}
	for _, v := range vals {
		if err := f.Value.Set(v); err != nil {
			return err
		}
	}
	return nil
}

// Describe makes fs's durations, booleans and numbers say what a value
// must look like when one is wrong, whatever its source; a duration must
// not be negative. Load and Apply call it.
func Describe(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if _, done := f.Value.(described); done {
			return
		}
		g, ok := f.Value.(flag.Getter)
		if !ok {
			return
		}
		switch g.Get().(type) {
		case time.Duration:
			f.Value = described{g, "a duration like 30s or 5m, not negative", true}
		case bool:
			f.Value = describedBool{described{g, "true or false", false}}
		case int, int64, uint, uint64:
			f.Value = described{g, "a whole number", false}
		}
	})
}

type described struct {
	flag.Getter
	want        string
	notNegative bool
}

func (d described) Set(v string) error {
	if err := d.Getter.Set(v); err != nil {
		return fmt.Errorf("%q is not %s", v, d.want)
	}
	if dur, ok := d.Get().(time.Duration); ok && d.notNegative && dur < 0 {
		return fmt.Errorf("%q is not %s", v, d.want)
	}
	return nil
}

type describedBool struct{ described }

func (describedBool) IsBoolFlag() bool { return true }

// parseYAML reads a mapping whose keys are settings' names.
func parseYAML(data []byte, names map[string][]string) (map[string]any, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	m := make(map[string]any, len(raw))
	for k, v := range raw { // fabric_peer is fabric-peer
		m[strings.ReplaceAll(k, "_", "-")] = v
	}
	known := map[string]bool{}
	for _, ns := range names {
		for _, n := range ns {
			known[n] = true
		}
	}
	var unknown []string
	for k := range m {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("unknown key %q", strings.Join(unknown, ", "))
	}
	return m, nil
}

// yamlValues turns a YAML value into flag values.
func yamlValues(raw any) ([]string, error) {
	switch v := raw.(type) {
	case nil:
		return nil, errors.New("has no value")
	case []any:
		out := make([]string, 0, len(v))
		for _, item := range v {
			s, err := scalar(item)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
	s, err := scalar(raw)
	return []string{s}, err
}

func scalar(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("%v is not a string, number or boolean", v)
}

// Usage writes fs's flags, each with its environment variable, after
// intro. With settings, only the flags it names as settings show one (the
// others are a command's operands).
func Usage(fs *flag.FlagSet, w io.Writer, intro string, settings ...func(string) bool) {
	fmt.Fprint(w, intro)
	fmt.Fprintf(w, "Every setting can also be given by its environment variable (%s<NAME>) or in a YAML file (--%s FILE, or %s) under its name; a flag given wins over the environment, which wins over the file.\n\n",
		EnvPrefix, FileFlag, Env(FileFlag))
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		if len(settings) == 0 || settings[0](f.Name) {
			fmt.Fprintf(w, "  [%s]", Env(f.Name))
		}
		fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}
